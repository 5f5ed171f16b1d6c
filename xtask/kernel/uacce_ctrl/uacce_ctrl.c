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
 */

#include <linux/fs.h>
#include <linux/init.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
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

UACCE_CTRL_HOOK long uacce_ctrl_unl_ioctl(struct file *filep, unsigned int cmd,
					  unsigned long arg)
{
	struct uacce_pin_container *priv = filep->private_data;
	struct uacce_pin_address addr;

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

module_misc_device(uacce_ctrl_miscdev);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("uacce_ctrl pin/unpin ioctls (RFC ABI), uacce-trace test fixture");
