/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What kernel_ext needs from C beyond kernel::bindings: the netfilter sockopt
 * and pernet interfaces (turned into Rust by the bindgen rule in Kbuild) and
 * wrappers for static-inline helpers Rust cannot call (helpers.c).
 */
#include <linux/netfilter.h>
#include <linux/sockptr.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>

/* What a packet gives to be keyed by (kext_skb_flow): addresses and, for a
 * first or only fragment of TCP, UDP, UDP-Lite, SCTP or DCCP, the
 * destination port; all in network byte order. */
struct kext_flow {
	u8 saddr[16];
	u8 daddr[16];
	u8 addr_len;		/* 4 or 16 */
	u8 proto;		/* the transport protocol (IPv6: after extension headers) */
	u8 has_port;
	u8 reserved;
	u8 dport[2];
};

struct net *kext_sock_net(const struct sock *sk);
void *kext_net_generic(const struct net *net, unsigned int id);
bool kext_net_ns_capable(const struct net *net, int cap);
bool kext_net_owned_by_init_user_ns(const struct net *net);
u64 kext_clock_real_ns(void);
void kext_init_delayed_work(struct delayed_work *dwork, work_func_t fn);
void kext_mod_delayed_work(struct delayed_work *dwork, unsigned long delay);
void kext_cond_resched(void);
void *kext_kvmalloc_account(size_t size);
size_t kext_kvmalloc_account_size(size_t size);
void kext_rcu_read_lock(void);
void kext_rcu_read_unlock(void);
void kext_kvfree_rcu(void *ptr);
long kext_copy_to_user_nofault(void __user *dst, const void *src, size_t size);
u64 *kext_alloc_percpu_u64(size_t count);
void kext_free_percpu(void *ptr);
void kext_percpu_u64_add(u64 *counters, size_t index, u64 n);
u64 kext_percpu_u64_sum(const u64 *counters, size_t index);
unsigned int kext_num_possible_cpus(void);
void *kext_nf_hook_ops_new(nf_hookfn *hook, void *priv, u8 pf, unsigned int hooknum,
			   int priority);
void kext_nf_hook_ops_free(void *ops);
int kext_nf_register_net_hook(struct net *net, void *ops);
void kext_nf_unregister_net_hook(struct net *net, void *ops);
void kext_synchronize_net(void);
void kext_synchronize_rcu(void);
bool kext_skb_flow(const struct sk_buff *skb, u8 pf, struct kext_flow *flow);
u32 kext_skb_mark(const struct sk_buff *skb);
void kext_skb_set_mark(struct sk_buff *skb, u32 mark);
unsigned int kext_nf_reroute(struct sk_buff *skb, const struct nf_hook_state *state);
