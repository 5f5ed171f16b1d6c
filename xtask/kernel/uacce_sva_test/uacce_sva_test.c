// SPDX-License-Identifier: GPL-2.0
/*
 * uacce_sva_test: the guest driver of QEMU's uacce-sva-test device (the
 * uacce-trace patch in xtask/qemu/), a uacce accelerator with shared
 * virtual addressing.
 *
 * The device (PCI 1b36:1f5a) has ATS, PASID and PRI. The driver registers
 * it with uacce with UACCE_DEV_SVA, so opening /dev/uacce_sva_test-N binds
 * the process's mm through iommu_sva_bind_device() (the real Intel IOMMU
 * driver) and the queue gets that PASID; UACCE_CMD_START_Q writes the PASID
 * into the device's control page and enables the queue. mmap of region 0
 * (UACCE_QFRT_MMIO, one page) maps the queue's register page into the
 * process, as HiSilicon's ZIP/SEC queues map their doorbells: the process
 * writes a descriptor (user VA, length, flags), rings the doorbell and
 * polls the status. The device translates through ATS and sends page
 * requests for absent pages, which the IOMMU driver reports from its page
 * request IRQ thread.
 *
 * Register layout: see hw/misc/uacce-sva-test.c in the QEMU patch.
 * Built into the x86 test kernel by `cargo xtask kernel` (the kernel has
 * no module support); Linux 6.12.
 */

#include <linux/bitmap.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/uacce.h>

#define UST_VENDOR_ID	0x1b36
#define UST_DEVICE_ID	0x1f5a
#define UST_ID		0x53564131
#define UST_REG_ID	0x000
#define UST_REG_NR_Q	0x004
#define UST_REG_QPASID(q)	(0x100 + 0x10 * (q))
#define UST_REG_QENABLE(q)	(0x104 + 0x10 * (q))
#define UST_MAX_QUEUES	8

struct ust_dev {
	struct pci_dev *pdev;
	void __iomem *regs;
	struct uacce_device *uacce;
	unsigned int nr_queues;
	DECLARE_BITMAP(used, UST_MAX_QUEUES);
};

struct ust_queue {
	struct ust_dev *dev;
	unsigned int index;
};

static int ust_get_available_instances(struct uacce_device *uacce)
{
	struct ust_dev *ud = uacce->priv;

	return ud->nr_queues - bitmap_weight(ud->used, ud->nr_queues);
}

/* Called by uacce_fops_open with uacce->mutex held, after the SVA bind. */
static int ust_get_queue(struct uacce_device *uacce, unsigned long pasid,
			 struct uacce_queue *q)
{
	struct ust_dev *ud = uacce->priv;
	struct ust_queue *uq;
	unsigned int i;

	i = find_first_zero_bit(ud->used, ud->nr_queues);
	if (i >= ud->nr_queues)
		return -EBUSY;
	uq = kzalloc(sizeof(*uq), GFP_KERNEL);
	if (!uq)
		return -ENOMEM;
	set_bit(i, ud->used);
	uq->dev = ud;
	uq->index = i;
	q->priv = uq;
	return 0;
}

static void ust_put_queue(struct uacce_queue *q)
{
	struct ust_queue *uq = q->priv;

	if (!uq)
		return;
	writel(0, uq->dev->regs + UST_REG_QENABLE(uq->index));
	clear_bit(uq->index, uq->dev->used);
	kfree(uq);
	q->priv = NULL;
}

static int ust_start_queue(struct uacce_queue *q)
{
	struct ust_queue *uq = q->priv;
	void __iomem *regs = uq->dev->regs;

	writel(q->pasid, regs + UST_REG_QPASID(uq->index));
	writel(1, regs + UST_REG_QENABLE(uq->index));
	if (!(readl(regs + UST_REG_QENABLE(uq->index)) & 1)) {
		dev_err(&uq->dev->pdev->dev,
			"queue %u: the device refused PASID %u\n", uq->index,
			q->pasid);
		return -EIO;
	}
	dev_dbg(&uq->dev->pdev->dev, "queue %u: PASID %u started\n",
		uq->index, q->pasid);
	return 0;
}

static void ust_stop_queue(struct uacce_queue *q)
{
	struct ust_queue *uq = q->priv;

	writel(0, uq->dev->regs + UST_REG_QENABLE(uq->index));
}

static int ust_mmap(struct uacce_queue *q, struct vm_area_struct *vma,
		    struct uacce_qfile_region *qfr)
{
	struct ust_queue *uq = q->priv;
	struct pci_dev *pdev = uq->dev->pdev;
	resource_size_t page;

	if (qfr->type != UACCE_QFRT_MMIO)
		return -EINVAL;
	if (vma->vm_end - vma->vm_start != PAGE_SIZE)
		return -EINVAL;
	/* Page 0 is the control page; queue i's registers are page i + 1. */
	page = pci_resource_start(pdev, 0) + (uq->index + 1) * PAGE_SIZE;
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	return io_remap_pfn_range(vma, vma->vm_start, page >> PAGE_SHIFT,
				  PAGE_SIZE, vma->vm_page_prot);
}

static const struct uacce_ops ust_uacce_ops = {
	.get_available_instances = ust_get_available_instances,
	.get_queue = ust_get_queue,
	.put_queue = ust_put_queue,
	.start_queue = ust_start_queue,
	.stop_queue = ust_stop_queue,
	.mmap = ust_mmap,
};

static int ust_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct uacce_interface iface = {
		.name = "uacce_sva_test",
		.flags = UACCE_DEV_SVA,
		.ops = &ust_uacce_ops,
	};
	struct ust_dev *ud;
	u32 ident;
	int ret;

	ud = devm_kzalloc(&pdev->dev, sizeof(*ud), GFP_KERNEL);
	if (!ud)
		return -ENOMEM;
	ud->pdev = pdev;
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ud->regs = pcim_iomap(pdev, 0, 0);
	if (!ud->regs)
		return -ENOMEM;
	ident = readl(ud->regs + UST_REG_ID);
	if (ident != UST_ID) {
		dev_err(&pdev->dev, "unexpected ID register %#x\n", ident);
		return -ENODEV;
	}
	ud->nr_queues = min_t(u32, readl(ud->regs + UST_REG_NR_Q),
			      UST_MAX_QUEUES);
	/* The queues' register pages must be whole pages of their own. */
	if (pci_resource_len(pdev, 0) < (ud->nr_queues + 1) * PAGE_SIZE)
		return -ENODEV;
	pci_set_master(pdev);

	ud->uacce = uacce_alloc(&pdev->dev, &iface);
	if (IS_ERR(ud->uacce))
		return PTR_ERR(ud->uacce);
	if (!(ud->uacce->flags & UACCE_DEV_SVA)) {
		dev_err(&pdev->dev,
			"SVA could not be enabled (IOPF/SVA features refused)\n");
		uacce_remove(ud->uacce);
		return -ENODEV;
	}
	ud->uacce->qf_pg_num[UACCE_QFRT_MMIO] = 1;
	ud->uacce->algs = "sva-test";
	ud->uacce->api_ver = "uacce_sva_test_v1";
	ud->uacce->priv = ud;
	ret = uacce_register(ud->uacce);
	if (ret) {
		uacce_remove(ud->uacce);
		return ret;
	}
	pci_set_drvdata(pdev, ud);
	dev_info(&pdev->dev, "uacce_sva_test: %u queues, SVA on (%s)\n",
		 ud->nr_queues, dev_name(&ud->uacce->dev));
	return 0;
}

static void ust_remove(struct pci_dev *pdev)
{
	struct ust_dev *ud = pci_get_drvdata(pdev);

	uacce_remove(ud->uacce);
}

static const struct pci_device_id ust_ids[] = {
	{ PCI_DEVICE(UST_VENDOR_ID, UST_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ust_ids);

static struct pci_driver ust_driver = {
	.name = "uacce_sva_test",
	.id_table = ust_ids,
	.probe = ust_probe,
	.remove = ust_remove,
};
module_pci_driver(ust_driver);

MODULE_DESCRIPTION("uacce-trace: driver of QEMU's uacce-sva-test SVA accelerator");
MODULE_LICENSE("GPL");
