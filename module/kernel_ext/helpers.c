// SPDX-License-Identifier: GPL-2.0
/*
 * kernel_ext's C side: static-inline kernel helpers wrapped for Rust. Nothing
 * here is specific to one module.
 */
#include <linux/capability.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netdevice.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/overflow.h>
#include <linux/percpu.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/user_namespace.h>
#include <linux/workqueue.h>
#include <net/ipv6.h>
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

void kext_init_delayed_work(struct delayed_work *dwork, work_func_t fn)
{
	INIT_DELAYED_WORK(dwork, fn);
}

/* Runs `dwork` `delay` jiffies from now, on the unbound system workqueue
 * (its runs need no particular CPU), or moves a pending run there. */
void kext_mod_delayed_work(struct delayed_work *dwork, unsigned long delay)
{
	mod_delayed_work(system_unbound_wq, dwork, delay);
}

void kext_cond_resched(void)
{
	cond_resched();
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

unsigned int kext_num_possible_cpus(void)
{
	return num_possible_cpus();
}

/*
 * A netfilter hook's ops, zeroed but for what is given, charged to the
 * caller's memory cgroup. Built here so that the Rust side never sees the
 * struct, whose layout changes between kernels (7.3 put a list head first).
 */
void *kext_nf_hook_ops_new(nf_hookfn *hook, void *priv, u8 pf, unsigned int hooknum,
			   int priority)
{
	struct nf_hook_ops *ops = kzalloc(sizeof(*ops), GFP_KERNEL_ACCOUNT);

	if (!ops)
		return NULL;
	ops->hook = hook;
	ops->priv = priv;
	ops->pf = pf;
	ops->hooknum = hooknum;
	ops->priority = priority;
	return ops;
}

void kext_nf_hook_ops_free(void *ops)
{
	kfree(ops);
}

int kext_nf_register_net_hook(struct net *net, void *ops)
{
	return nf_register_net_hook(net, ops);
}

void kext_nf_unregister_net_hook(struct net *net, void *ops)
{
	nf_unregister_net_hook(net, ops);
}

/* Waits until no packet runs a hook unregistered before the call. */
void kext_synchronize_net(void)
{
	synchronize_net();
}

void kext_synchronize_rcu(void)
{
	synchronize_rcu();
}

/* The destination port of the transport header at `off`, when `proto` has one there. */
static bool kext_flow_port(const struct sk_buff *skb, int off, struct kext_flow *flow)
{
	__be16 _ports[2];
	const __be16 *ports;

	switch (flow->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:
		/* Each begins with the source port, then the destination port. */
		ports = skb_header_pointer(skb, off, sizeof(_ports), _ports);
		if (!ports)
			return false;
		memcpy(flow->dport, &ports[1], sizeof(flow->dport));
		return true;
	default:
		return false;
	}
}

/*
 * Fills `flow` from the network header of a packet at a netfilter hook of
 * family `pf` (NFPROTO_IPV4 or NFPROTO_IPV6); false when the header cannot
 * be read. A fragment but the first has no port (as ipset's
 * ip_set_get_ip{4,6}_port).
 */
bool kext_skb_flow(const struct sk_buff *skb, u8 pf, struct kext_flow *flow)
{
	int noff = skb_network_offset(skb);

	memset(flow, 0, sizeof(*flow));
	if (pf == NFPROTO_IPV4) {
		struct iphdr _iph;
		const struct iphdr *iph = skb_header_pointer(skb, noff, sizeof(_iph), &_iph);

		if (!iph || iph->ihl < 5)
			return false;
		memcpy(flow->saddr, &iph->saddr, 4);
		memcpy(flow->daddr, &iph->daddr, 4);
		flow->addr_len = 4;
		flow->proto = iph->protocol;
		if (!(ntohs(iph->frag_off) & IP_OFFSET))
			flow->has_port = kext_flow_port(skb, noff + iph->ihl * 4, flow);
		return true;
	}
	if (pf == NFPROTO_IPV6) {
		struct ipv6hdr _ip6h;
		const struct ipv6hdr *ip6h = skb_header_pointer(skb, noff, sizeof(_ip6h), &_ip6h);
		__be16 frag_off = 0;
		u8 nexthdr;
		int toff;

		if (!ip6h)
			return false;
		memcpy(flow->saddr, &ip6h->saddr, 16);
		memcpy(flow->daddr, &ip6h->daddr, 16);
		flow->addr_len = 16;
		nexthdr = ip6h->nexthdr;
		toff = ipv6_skip_exthdr(skb, noff + sizeof(_ip6h), &nexthdr, &frag_off);
		if (toff < 0)
			return true;
		flow->proto = nexthdr;
		if (!(ntohs(frag_off) & ~0x7))
			flow->has_port = kext_flow_port(skb, toff, flow);
		return true;
	}
	return false;
}

u32 kext_skb_mark(const struct sk_buff *skb)
{
	return skb->mark;
}

void kext_skb_set_mark(struct sk_buff *skb, u32 mark)
{
	skb->mark = mark;
}

/*
 * Routes a locally generated packet again after a hook changed its mark,
 * as iptables' mangle table does at LOCAL_OUT (ipt_mangle_out,
 * ip6t_mangle_out), so that policy routing by fwmark applies. Returns the
 * hook's verdict: NF_ACCEPT, or a drop carrying the routing error, which
 * the sender then gets (NF_DROP_ERR).
 */
unsigned int kext_nf_reroute(struct sk_buff *skb, const struct nf_hook_state *state)
{
	int err = 0;

	if (state->pf == NFPROTO_IPV4)
		err = ip_route_me_harder(state->net, state->sk, skb, RTN_UNSPEC);
	else if (state->pf == NFPROTO_IPV6)
		err = nf_ip6_route_me_harder(state->net, state->sk, skb);
	return err < 0 ? NF_DROP_ERR(err) : NF_ACCEPT;
}
