// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/uacce_ctrl test fixture for the uacce-trace test kernel.
 *
 * Implements the user ABI of the RFC "uacce: Add uacce_ctrl misc device"
 * (Zhou Wang, January 2021, never merged): a misc device whose ioctls pin
 * (long-term) and unpin ranges of the caller's memory, so that an SVA
 * accelerator never takes IO page faults on them. The function names are
 * those of the RFC, because uacce-trace hooks them where they exist:
 *
 *   uacce_ctrl_open, uacce_ctrl_release, uacce_ctrl_unl_ioctl,
 *   uacce_pin_page, uacce_unpin_page
 *
 * `cargo xtask kernel` copies this file into the kernel source as
 * drivers/misc/uacce/uacce_ctrl_fixture.c and builds it in (the test kernel
 * has no module support), so the functions are in kallsyms, in
 * available_filter_functions and in vmlinux BTF.
 *
 * ABI:
 *   struct uacce_pin_address { __u64 addr; __u64 size; };
 *   UACCE_CMD_PIN   = _IOW('W', 2, struct uacce_pin_address) = 0x40105702
 *   UACCE_CMD_UNPIN = _IOW('W', 3, struct uacce_pin_address) = 0x40105703
 *
 * PIN pins every page touched by [addr, addr + size) with
 * pin_user_pages_fast(addr & PAGE_MASK, n, FOLL_FORCE | FOLL_WRITE |
 * FOLL_LONGTERM, pages); the pin is kept per open file in an xarray keyed by
 * the index of its first page. UNPIN of the same range releases it; closing
 * the file releases every pin left. Errors: -EINVAL (empty, wrapping or too
 * large range, or an UNPIN whose size differs from the pin), -EEXIST (a pin
 * already starts at that page), -ENOENT (UNPIN of nothing pinned), -EFAULT
 * (bad argument pointer, or not every page could be pinned: the pages that
 * were are released again), -ENOMEM, -ENOTTY (unknown command).
 *
 * Two test-only additions, not in the RFC, so that uacce-trace can be
 * tested against what a real SVA accelerator leaves in the kernel:
 *
 * - UACCE_CTRL_TEST_MM_PASID = _IOR('W', 0x7e, __u32): gives the calling
 *   process's mm a PASID exactly as iommu_sva_bind_device() leaves it
 *   (iommu_alloc_mm_data() in drivers/iommu/iommu-sva.c): a PASID from the
 *   global IDA (iommu_alloc_global_pasid()), a kzalloc'ed struct
 *   iommu_mm_data holding it, published in mm->iommu_mm with a release
 *   store. The kernel frees both at mm teardown (mm_pasid_drop() from
 *   __mmdrop()), as for a real bind. Writes the PASID to the argument; an
 *   mm that already has one keeps it. The tracer's start-up scan must find
 *   it without ever having seen a bind.
 * - A uacce device "uacce_fixture" registered with uacce_alloc() and
 *   uacce_register() (no UACCE_DEV_SVA, so no IOMMU is needed), so that
 *   /dev/uacce_fixture-0 exists and the real uacce_fops_open/release and
 *   UACCE_CMD_START_Q/PUT_Q paths of drivers/misc/uacce/uacce.c run.
 */

#include <linux/err.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/iommu.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uacce.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

struct uacce_pin_address {
	__u64 addr;
	__u64 size;
};

#define UACCE_CMD_PIN	_IOW('W', 2, struct uacce_pin_address)
#define UACCE_CMD_UNPIN	_IOW('W', 3, struct uacce_pin_address)

static_assert(UACCE_CMD_PIN == 0x40105702);
static_assert(UACCE_CMD_UNPIN == 0x40105703);

/* Test only: give current->mm a PASID as an SVA bind would (see above). */
#define UACCE_CTRL_TEST_MM_PASID _IOR('W', 0x7e, __u32)

/*
 * The tracer attaches to these functions: keep each one whole, neither
 * inlined nor replaced by an IPA clone (.isra/.constprop) at its call site.
 */
#if __has_attribute(__noipa__)
#define UACCE_CTRL_HOOK noinline __attribute__((__noipa__))
#else
#define UACCE_CTRL_HOOK noinline
#endif

/* Largest range one PIN may cover (pin_user_pages_fast takes an int). */
#define UACCE_PIN_MAX_PAGES ((unsigned long)INT_MAX)

/* Pins of one open file. */
struct uacce_pin_container {
	struct mutex lock;	/* serialises PIN/UNPIN against each other */
	struct xarray array;	/* first page index -> struct pin_pages */
};

/* One pinned range. */
struct pin_pages {
	unsigned long first;
	unsigned long nr_pages;
	struct page **pages;
};

/* Not static (the RFC's names, visible to the tracer), so declared here. */
int uacce_ctrl_open(struct inode *inode, struct file *file);
int uacce_ctrl_release(struct inode *inode, struct file *file);
long uacce_ctrl_unl_ioctl(struct file *filep, unsigned int cmd,
			  unsigned long arg);
int uacce_pin_page(struct uacce_pin_container *priv,
		   struct uacce_pin_address *addr);
int uacce_unpin_page(struct uacce_pin_container *priv,
		     struct uacce_pin_address *addr);

/* First page index and page count of [addr, addr + size), or -EINVAL. */
static int uacce_pin_range(const struct uacce_pin_address *addr,
			   unsigned long *first, unsigned long *nr_pages)
{
	u64 last_byte;

	if (!addr->size || check_add_overflow(addr->addr, addr->size - 1,
					      &last_byte))
		return -EINVAL;
	*first = addr->addr >> PAGE_SHIFT;
	*nr_pages = (last_byte >> PAGE_SHIFT) - *first + 1;
	if (*nr_pages > UACCE_PIN_MAX_PAGES)
		return -EINVAL;
	return 0;
}

static void uacce_free_pin(struct pin_pages *p)
{
	kvfree(p->pages);
	kfree(p);
}

UACCE_CTRL_HOOK int uacce_pin_page(struct uacce_pin_container *priv,
				   struct uacce_pin_address *addr)
{
	unsigned int flags = FOLL_FORCE | FOLL_WRITE | FOLL_LONGTERM;
	unsigned long first, nr_pages;
	struct pin_pages *p;
	int ret, pinned;

	ret = uacce_pin_range(addr, &first, &nr_pages);
	if (ret)
		return ret;

	mutex_lock(&priv->lock);
	if (xa_load(&priv->array, first)) {
		ret = -EEXIST;
		goto unlock;
	}

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p) {
		ret = -ENOMEM;
		goto unlock;
	}
	p->first = first;
	p->nr_pages = nr_pages;
	/* Huge sizes come from user space: fail with -ENOMEM, no warning. */
	p->pages = kvmalloc_array(nr_pages, sizeof(*p->pages),
				  GFP_KERNEL | __GFP_NOWARN);
	if (!p->pages) {
		ret = -ENOMEM;
		goto free;
	}

	pinned = pin_user_pages_fast(first << PAGE_SHIFT, nr_pages, flags,
				     p->pages);
	if (pinned < 0) {
		ret = pinned;
		goto free;
	}
	if ((unsigned long)pinned != nr_pages) {
		/* A partial pin is no pin: give back what was taken. */
		unpin_user_pages(p->pages, pinned);
		ret = -EFAULT;
		goto free;
	}

	ret = xa_insert(&priv->array, first, p, GFP_KERNEL);
	if (ret) {
		unpin_user_pages(p->pages, nr_pages);
		if (ret == -EBUSY)
			ret = -EEXIST;
		goto free;
	}
	mutex_unlock(&priv->lock);
	return 0;

free:
	uacce_free_pin(p);
unlock:
	mutex_unlock(&priv->lock);
	return ret;
}

UACCE_CTRL_HOOK int uacce_unpin_page(struct uacce_pin_container *priv,
				     struct uacce_pin_address *addr)
{
	unsigned long first, nr_pages;
	struct pin_pages *p;
	int ret;

	ret = uacce_pin_range(addr, &first, &nr_pages);
	if (ret)
		return ret;

	mutex_lock(&priv->lock);
	p = xa_load(&priv->array, first);
	if (!p) {
		ret = -ENOENT;
		goto unlock;
	}
	if (p->nr_pages != nr_pages) {
		ret = -EINVAL;
		goto unlock;
	}
	xa_erase(&priv->array, first);
	unpin_user_pages(p->pages, p->nr_pages);
	uacce_free_pin(p);
unlock:
	mutex_unlock(&priv->lock);
	return ret;
}

UACCE_CTRL_HOOK int uacce_ctrl_open(struct inode *inode, struct file *file)
{
	struct uacce_pin_container *priv;

	priv = kzalloc(sizeof(*priv), GFP_KERNEL);
	if (!priv)
		return -ENOMEM;
	mutex_init(&priv->lock);
	xa_init(&priv->array);
	file->private_data = priv;
	return 0;
}

UACCE_CTRL_HOOK int uacce_ctrl_release(struct inode *inode, struct file *file)
{
	struct uacce_pin_container *priv = file->private_data;
	struct pin_pages *p;
	unsigned long idx;

	xa_for_each(&priv->array, idx, p) {
		xa_erase(&priv->array, idx);
		unpin_user_pages(p->pages, p->nr_pages);
		uacce_free_pin(p);
	}
	xa_destroy(&priv->array);
	mutex_destroy(&priv->lock);
	kfree(priv);
	return 0;
}

#ifdef CONFIG_IOMMU_MM_DATA
/*
 * iommu_alloc_global_pasid() reads only dev->iommu->max_pasids; this stands
 * for a device with 20 PASID bits, the PCIe maximum.
 */
static struct dev_iommu uacce_ctrl_pasid_iommu = { .max_pasids = 1U << 20 };
static struct device uacce_ctrl_pasid_dev = { .iommu = &uacce_ctrl_pasid_iommu };
static DEFINE_MUTEX(uacce_ctrl_pasid_lock);

/* The PASID of current->mm, allocated as iommu_alloc_mm_data() does. */
static long uacce_ctrl_test_mm_pasid(u32 __user *out)
{
	struct mm_struct *mm = current->mm;
	struct iommu_mm_data *iommu_mm;
	ioasid_t pasid;
	long ret = 0;

	if (!mm)
		return -EINVAL;
	mutex_lock(&uacce_ctrl_pasid_lock);
	iommu_mm = READ_ONCE(mm->iommu_mm);
	if (!iommu_mm) {
		iommu_mm = kzalloc(sizeof(*iommu_mm), GFP_KERNEL);
		if (!iommu_mm) {
			ret = -ENOMEM;
			goto unlock;
		}
		pasid = iommu_alloc_global_pasid(&uacce_ctrl_pasid_dev);
		if (pasid == IOMMU_PASID_INVALID) {
			kfree(iommu_mm);
			ret = -ENOSPC;
			goto unlock;
		}
		iommu_mm->pasid = pasid;
		INIT_LIST_HEAD(&iommu_mm->sva_domains);
		/* Fields before the pointer, as iommu_alloc_mm_data(). */
		smp_store_release(&mm->iommu_mm, iommu_mm);
	}
	pasid = iommu_mm->pasid;
unlock:
	mutex_unlock(&uacce_ctrl_pasid_lock);
	if (!ret && put_user(pasid, out))
		ret = -EFAULT;
	return ret;
}
#else
static long uacce_ctrl_test_mm_pasid(u32 __user *out)
{
	return -EOPNOTSUPP;
}
#endif

UACCE_CTRL_HOOK long uacce_ctrl_unl_ioctl(struct file *filep, unsigned int cmd,
					  unsigned long arg)
{
	struct uacce_pin_container *priv = filep->private_data;
	struct uacce_pin_address addr;

	if (cmd == UACCE_CTRL_TEST_MM_PASID)
		return uacce_ctrl_test_mm_pasid((u32 __user *)arg);
	if (cmd != UACCE_CMD_PIN && cmd != UACCE_CMD_UNPIN)
		return -ENOTTY;
	if (copy_from_user(&addr, (void __user *)arg, sizeof(addr)))
		return -EFAULT;
	if (cmd == UACCE_CMD_PIN)
		return uacce_pin_page(priv, &addr);
	return uacce_unpin_page(priv, &addr);
}

static const struct file_operations uacce_ctrl_fops = {
	.owner = THIS_MODULE,
	.open = uacce_ctrl_open,
	.release = uacce_ctrl_release,
	.unlocked_ioctl = uacce_ctrl_unl_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice uacce_ctrl_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "uacce_ctrl",
	.fops = &uacce_ctrl_fops,
	.mode = 0600,
};

/* ------------------------------------------------------------------ uacce */

/*
 * A uacce device without hardware: queues need no resources, so the ops
 * only keep count. uacce.c calls them under uacce->mutex.
 */
static int uacce_fixture_available(struct uacce_device *uacce)
{
	return 16;
}

static int uacce_fixture_get_queue(struct uacce_device *uacce,
				   unsigned long pasid, struct uacce_queue *q)
{
	return 0;
}

static void uacce_fixture_put_queue(struct uacce_queue *q)
{
}

static int uacce_fixture_start_queue(struct uacce_queue *q)
{
	return 0;
}

static void uacce_fixture_stop_queue(struct uacce_queue *q)
{
}

static const struct uacce_ops uacce_fixture_ops = {
	.get_available_instances = uacce_fixture_available,
	.get_queue = uacce_fixture_get_queue,
	.put_queue = uacce_fixture_put_queue,
	.start_queue = uacce_fixture_start_queue,
	.stop_queue = uacce_fixture_stop_queue,
};

static struct uacce_device *uacce_fixture;

static int __init uacce_ctrl_init(void)
{
	struct uacce_interface iface = {
		.name = "uacce_fixture",
		.flags = 0,	/* no UACCE_DEV_SVA: no IOMMU needed */
		.ops = &uacce_fixture_ops,
	};
	int ret;

	ret = misc_register(&uacce_ctrl_miscdev);
	if (ret)
		return ret;
	uacce_fixture = uacce_alloc(uacce_ctrl_miscdev.this_device, &iface);
	if (IS_ERR(uacce_fixture)) {
		ret = PTR_ERR(uacce_fixture);
		goto deregister;
	}
	ret = uacce_register(uacce_fixture);
	if (ret) {
		uacce_remove(uacce_fixture);
		goto deregister;
	}
	return 0;

deregister:
	uacce_fixture = NULL;
	misc_deregister(&uacce_ctrl_miscdev);
	return ret;
}

static void __exit uacce_ctrl_exit(void)
{
	uacce_remove(uacce_fixture);
	misc_deregister(&uacce_ctrl_miscdev);
}

module_init(uacce_ctrl_init);
module_exit(uacce_ctrl_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("uacce_ctrl pin/unpin ioctls (RFC ABI), uacce-trace test fixture");
