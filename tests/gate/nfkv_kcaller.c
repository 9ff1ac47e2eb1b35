// SPDX-License-Identifier: GPL-2.0
/*
 * nfkv_kcaller: an in-kernel caller of nfkv's set commands, for the VM
 * test kcaller::kernel_pointer_requests_are_copied_whole. Loading it sends
 * requests whose sockptr_t is a kernel pointer, as a module calling
 * nf_setsockopt() does (no in-tree caller does: bpf_setsockopt() stops at
 * do_ip_setsockopt()), so nfkv's kernel-pointer copy runs:
 *
 *   a flush, a batch putting "kptr-tmp" and a delete of it (all on the
 *     stack: the table is left empty),
 *   a put of "kptr-small" (10 bytes 'S', copied onto the stack),
 *   a put of "kptr-big" (3000 bytes 'B', over 512: copied into the entry),
 *   a batch putting "kptr-batch1" (300 bytes '1') and "kptr-batch2"
 *     (400 bytes '2'),
 *   puts of "kptr-bad" whose header claims one value byte more than they
 *     carry, under and over 512 bytes: each EINVAL.
 *
 * Loading fails with the first unexpected result (its errno, or EPROTO
 * for a success that should have failed). Test-only; unload it after.
 */
#include <linux/module.h>
#include <linux/net.h>
#include <linux/netfilter.h>
#include <linux/slab.h>
#include <linux/sockptr.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "../../include/nfkv.h"

static unsigned int optbase = NFKV_BASE_CTL;
module_param(optbase, uint, 0444);
MODULE_PARM_DESC(optbase, "nfkv's optbase (default its default)");

/* Appends a PUT record of `key` and `value_len` bytes of `fill` at *at,
 * padded to NFKV_ALIGN when `pad` (the buffer is zeroed). */
static void add_put(u8 *buf, size_t *at, const char *key, u32 value_len,
		    u8 fill, bool pad)
{
	struct nfkv_op op = {
		.op = NFKV_OP_PUT,
		.key_len = strlen(key),
		.value_len = value_len,
	};

	memcpy(buf + *at, &op, sizeof(op));
	*at += sizeof(op);
	memcpy(buf + *at, key, op.key_len);
	*at += op.key_len;
	memset(buf + *at, fill, value_len);
	*at += value_len;
	if (pad)
		*at = NFKV_ALIGN_UP(*at);
}

static int call(struct sock *sk, unsigned int cmd, u8 *buf, size_t len,
		int want, const char *what)
{
	int err = nf_setsockopt(sk, PF_INET, optbase + cmd, KERNEL_SOCKPTR(buf),
				len);

	if (err == want)
		return 0;
	pr_err("nfkv_kcaller: %s (%zu bytes): %d, expected %d\n", what, len,
	       err, want);
	return err ? err : -EPROTO;
}

static int __init kcaller_init(void)
{
	const unsigned int put = NFKV_SO_SET_PUT - NFKV_BASE_CTL;
	const unsigned int batch = NFKV_SO_SET_BATCH - NFKV_BASE_CTL;
	const unsigned int flush = NFKV_SO_SET_FLUSH - NFKV_BASE_CTL;
	const unsigned int del_cmd = NFKV_SO_SET_DEL - NFKV_BASE_CTL;
	struct nfkv_batch *header;
	struct nfkv_op *del;
	struct socket *sock;
	size_t len;
	u8 *buf;
	int err;

	buf = kzalloc(4096, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	err = sock_create_kern(&init_net, PF_INET, SOCK_DGRAM, IPPROTO_UDP,
			       &sock);
	if (err)
		goto out_free;

	/*
	 * A flush, a small batch and a delete first, so that every command's
	 * request is copied through a kernel pointer; the table is left as it
	 * was (empty).
	 */
	memset(buf, 0, 4096);
	err = call(sock->sk, flush, buf, sizeof(struct nfkv_flush), 0, "flush");
	if (err)
		goto out;
	header = (struct nfkv_batch *)buf;
	header->count = 1;
	len = sizeof(*header);
	add_put(buf, &len, "kptr-tmp", 10, 'T', true);
	err = call(sock->sk, batch, buf, len, 0, "batch, small");
	if (err)
		goto out;
	memset(buf, 0, 4096);
	del = (struct nfkv_op *)buf;
	del->op = NFKV_OP_DEL;
	del->key_len = strlen("kptr-tmp");
	memcpy(buf + sizeof(*del), "kptr-tmp", del->key_len);
	err = call(sock->sk, del_cmd, buf, sizeof(*del) + del->key_len, 0, "delete");
	if (err)
		goto out;

	memset(buf, 0, 4096);
	len = 0;
	add_put(buf, &len, "kptr-small", 10, 'S', false);
	err = call(sock->sk, put, buf, len, 0, "put, small");
	if (err)
		goto out;

	memset(buf, 0, 4096);
	len = 0;
	add_put(buf, &len, "kptr-big", 3000, 'B', false);
	err = call(sock->sk, put, buf, len, 0, "put, over 512 bytes");
	if (err)
		goto out;

	memset(buf, 0, 4096);
	header = (struct nfkv_batch *)buf;
	header->count = 2;
	len = sizeof(*header);
	add_put(buf, &len, "kptr-batch1", 300, '1', true);
	add_put(buf, &len, "kptr-batch2", 400, '2', true);
	err = call(sock->sk, batch, buf, len, 0, "batch");
	if (err)
		goto out;

	/* A header claiming one byte more than the request carries. */
	memset(buf, 0, 4096);
	len = 0;
	add_put(buf, &len, "kptr-bad", 100, 'X', false);
	err = call(sock->sk, put, buf, len - 1, -EINVAL, "put, short, small");
	if (err)
		goto out;
	memset(buf, 0, 4096);
	len = 0;
	add_put(buf, &len, "kptr-bad", 1000, 'X', false);
	err = call(sock->sk, put, buf, len - 1, -EINVAL, "put, short, over 512 bytes");
out:
	sock_release(sock);
out_free:
	kfree(buf);
	return err;
}

static void __exit kcaller_exit(void)
{
}

module_init(kcaller_init);
module_exit(kcaller_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("nfkv test: set requests through kernel pointers");
