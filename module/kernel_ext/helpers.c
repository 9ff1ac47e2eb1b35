// SPDX-License-Identifier: GPL-2.0
/*
 * kernel_ext's C side: static-inline kernel helpers wrapped for Rust. Nothing
 * here is specific to one module.
 */
#include <linux/capability.h>
#include <linux/overflow.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/user_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>

#include "helpers.h"

struct net *kext_sock_net(const struct sock *sk)
{
	return sock_net(sk);
}

/* The pernet data that register_pernet_subsys() allocated for `id`. */
void *kext_net_generic(const struct net *net, unsigned int id)
{
	return net_generic(net, id);
}

/* `cap` over the user namespace owning `net`, as ip_tables and IPVS check it. */
bool kext_net_ns_capable(const struct net *net, int cap)
{
	return ns_capable(net->user_ns, cap);
}

bool kext_net_owned_by_init_user_ns(const struct net *net)
{
	return net->user_ns == &init_user_ns;
}

u64 kext_clock_real_ns(void)
{
	return ktime_get_real_ns();
}

/*
 * `size` bytes charged to the caller's memory cgroup, as kvmalloc gives
 * them: up to a page one kmalloc (freed with kfree; it fails once, as fault
 * injection expects), above that kmalloc without retrying, then vmalloc, so
 * no high-order contiguous block is ever needed (freed with kvfree). For
 * rbtree entries and set requests; rbtree.rs `in_slab` names the same rule.
 * The caller chooses the size, so a failure is the caller's ENOMEM, not a
 * kernel warning (__GFP_NOWARN, as bpf_map_area_alloc).
 */
void *kext_kvmalloc_account(size_t size)
{
	/* What kvmalloc does up to a page, without its extra call. */
	if (size <= PAGE_SIZE)
		return kmalloc(size, GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	return kvmalloc(size, GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
}

/*
 * The most memory kext_kvmalloc_account(size) takes: its kmalloc size class
 * (a slab object up to 8 KiB, then a power-of-two number of pages). The
 * vmalloc fallback takes the size rounded up to pages, which is no more.
 */
size_t kext_kvmalloc_account_size(size_t size)
{
	return kmalloc_size_roundup(size);
}

void kext_rcu_read_lock(void)
{
	rcu_read_lock();
}

void kext_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

/*
 * Frees `ptr` (from kext_kvmalloc_account) once every RCU reader that may
 * still see it is done, with no rcu_head in the object: kvfree_rcu's
 * one-argument form, which may sleep (it waits for a grace period itself
 * when it cannot queue the pointer), so process context only.
 */
void kext_kvfree_rcu(void *ptr)
{
	kvfree_rcu_mightsleep(ptr);
}

/*
 * copy_to_user() that never faults a page in (so it can run where sleeping
 * is not allowed, under RCU): 0, or -EFAULT when a page is absent or the
 * address is bad, for the caller to tell apart with a copy that may fault.
 */
long kext_copy_to_user_nofault(void __user *dst, const void *src, size_t size)
{
	return copy_to_user_nofault(dst, src, size);
}

/*
 * Per-CPU pointers cross to Rust as plain ones (bindgen's Rust has no
 * address spaces; the Rust side only hands them back to these helpers),
 * converted through uintptr_t as the kernel's own casts between address
 * spaces are (x86's percpu segment is one where the compiler has them).
 */
#define kext_percpu_from_rust(p) ((u64 __percpu *)(__force uintptr_t)(p))

/* `count` u64 counters per CPU, zeroed, charged to the caller's memory cgroup. */
u64 *kext_alloc_percpu_u64(size_t count)
{
	u64 __percpu *p = __alloc_percpu_gfp(array_size(count, sizeof(u64)), __alignof__(u64),
					     GFP_KERNEL_ACCOUNT);

	return (u64 *)(__force uintptr_t)p;
}

void kext_free_percpu(void *ptr)
{
	free_percpu(kext_percpu_from_rust(ptr));
}

/* Adds to this CPU's copy of one counter: safe in any context. */
void kext_percpu_u64_add(u64 *counters, size_t index, u64 n)
{
	this_cpu_add(kext_percpu_from_rust(counters)[index], n);
}

/* One counter summed over every possible CPU. */
u64 kext_percpu_u64_sum(const u64 *counters, size_t index)
{
	u64 __percpu *c = kext_percpu_from_rust(counters);
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += READ_ONCE(*per_cpu_ptr(&c[index], cpu));
	return sum;
}
