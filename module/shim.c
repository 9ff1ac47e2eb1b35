// SPDX-License-Identifier: GPL-2.0
/*
 * The only C in nfkv: module parameters (Rust's module! has none in 6.12) and
 * wrappers for static-inline kernel helpers that Rust cannot call directly.
 */
#include <linux/capability.h>
#include <linux/module.h>
#include <net/netns/generic.h>
#include <net/sock.h>

#include "../include/nfkv.h"
#include "nfkv_kernel.h"

unsigned int nfkv_param_optbase = NFKV_BASE_CTL;
module_param_named(optbase, nfkv_param_optbase, uint, 0444);
MODULE_PARM_DESC(optbase, "First optname of the registered sockopt range (default 2048)");

unsigned int nfkv_param_max_value_len = 4096;
module_param_named(max_value_len, nfkv_param_max_value_len, uint, 0444);
MODULE_PARM_DESC(max_value_len, "Longest value in bytes (default 4096, at most 65536)");

unsigned int nfkv_param_max_entries = 65536;
module_param_named(max_entries, nfkv_param_max_entries, uint, 0444);
MODULE_PARM_DESC(max_entries, "Most entries per network namespace (default 65536)");
MODULE_VERSION(NFKV_VERSION);

unsigned int nfkv_net_id;

/* CAP_NET_ADMIN over the socket's network namespace, as ip_tables and IPVS check it. */
bool nfkv_sock_net_admin(const struct sock *sk)
{
	return ns_capable(sock_net(sk)->user_ns, CAP_NET_ADMIN);
}

/* The per-namespace slot (sized for one pointer) of the socket's namespace. */
void **nfkv_sock_net_slot(const struct sock *sk)
{
	return net_generic(sock_net(sk), nfkv_net_id);
}

void **nfkv_net_slot(const struct net *net)
{
	return net_generic(net, nfkv_net_id);
}

/* copy_from_sockptr() for user and kernel pointers alike; 0 or -EFAULT. */
int nfkv_copy_from_sockptr(void *dst, sockptr_t src, size_t size)
{
	return copy_from_sockptr(dst, src, size) ? -EFAULT : 0;
}
