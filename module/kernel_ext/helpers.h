/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What kernel_ext needs from C beyond kernel::bindings: the netfilter sockopt
 * and pernet interfaces (turned into Rust by the bindgen rule in Kbuild) and
 * wrappers for static-inline helpers Rust cannot call (helpers.c).
 */
#include <linux/netfilter.h>
#include <linux/sockptr.h>
#include <net/net_namespace.h>

struct net *kext_sock_net(const struct sock *sk);
void *kext_net_generic(const struct net *net, unsigned int id);
bool kext_net_ns_capable(const struct net *net, int cap);
bool kext_net_owned_by_init_user_ns(const struct net *net);
u64 kext_clock_real_ns(void);
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
