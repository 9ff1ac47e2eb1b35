// SPDX-License-Identifier: GPL-2.0
/*
 * nfkv_floor: the nf_sockopt channel with nothing behind it. Its handlers do
 * only what every nfkv command must do first, the CAP_NET_ADMIN check, and
 * return: the floor the benchmarks compare nfkv's commands with.
 */
#include <linux/capability.h>
#include <linux/module.h>
#include <linux/netfilter.h>
#include <net/sock.h>

#include "nfkv.h"

static unsigned int optbase = NFKV_BASE_CTL + 512;
module_param(optbase, uint, 0444);

static int floor_set(struct sock *sk, int optval, sockptr_t arg, unsigned int len)
{
	return ns_capable(sock_net(sk)->user_ns, CAP_NET_ADMIN) ? 0 : -EPERM;
}

static int floor_get(struct sock *sk, int optval, void __user *user, int *len)
{
	return ns_capable(sock_net(sk)->user_ns, CAP_NET_ADMIN) ? 0 : -EPERM;
}

static struct nf_sockopt_ops floor_sockopts = {
	.pf = PF_INET,
	.set = floor_set,
	.get = floor_get,
	.owner = THIS_MODULE,
};

static int __init floor_init(void)
{
	floor_sockopts.set_optmin = floor_sockopts.get_optmin = optbase;
	floor_sockopts.set_optmax = floor_sockopts.get_optmax = optbase + NFKV_SO_RANGE;
	return nf_register_sockopt(&floor_sockopts);
}

static void __exit floor_exit(void)
{
	nf_unregister_sockopt(&floor_sockopts);
}

module_init(floor_init);
module_exit(floor_exit);
MODULE_DESCRIPTION("nfkv benchmark floor: nf_sockopt handlers that only check permission");
MODULE_LICENSE("GPL");
