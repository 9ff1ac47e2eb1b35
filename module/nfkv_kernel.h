/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the Rust side of nfkv needs from the kernel beyond kernel::bindings:
 * the netfilter sockopt and pernet interfaces (turned into Rust by the
 * bindgen rule in Kbuild) and the few C helpers of shim.c.
 */
#include <linux/netfilter.h>
#include <linux/sockptr.h>
#include <net/net_namespace.h>

/* Module parameters (shim.c), read-only once the module is loaded. */
extern unsigned int nfkv_param_optbase;
extern unsigned int nfkv_param_max_value_len;
extern unsigned int nfkv_param_max_entries;

/* The pernet id the kernel assigns at register_pernet_subsys(). */
extern unsigned int nfkv_net_id;

/* Static-inline helpers wrapped for Rust. */
bool nfkv_sock_net_admin(const struct sock *sk);
void **nfkv_sock_net_slot(const struct sock *sk);
void **nfkv_net_slot(const struct net *net);
int nfkv_copy_from_sockptr(void *dst, sockptr_t src, size_t size);
