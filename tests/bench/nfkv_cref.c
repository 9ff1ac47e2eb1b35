// SPDX-License-Identifier: GPL-2.0
/*
 * nfkv_cref: the nfkv ABI (include/nfkv.h) written in C the way an
 * in-tree nf_sockopt user would write it, as the benchmarks' reference.
 * Same commands and semantics (all-or-nothing batches whose records see
 * their predecessors, versions and generation, EMSGSIZE with the needed
 * size), same permission check (CAP_NET_ADMIN over the socket's netns),
 * same locking discipline (one mutex per namespace table, never held across
 * a user copy, entries allocated before locking). Idiomatic C differences:
 * an entry is one allocation (node, key and value inline), and a batch is
 * applied in place with an undo log instead of planned first.
 */
#include <linux/capability.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/rbtree.h>
#include <linux/slab.h>
#include <linux/sockptr.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>

#include "nfkv.h"

static unsigned int optbase = NFKV_BASE_CTL + 256;
module_param(optbase, uint, 0444);
static unsigned int max_value_len = 4096;
module_param(max_value_len, uint, 0444);
/* Caller-sized allocations: charged to its memcg; a failure is its ENOMEM, not a warning. */
#define NFKV_GFP (GFP_KERNEL_ACCOUNT | __GFP_NOWARN)

static unsigned int max_entries = 65536;
module_param(max_entries, uint, 0444);

#define LIST_PAGE_MAX (1U << 20)

struct cref_entry {
	struct rb_node node;
	u64 version;
	u16 key_len;
	u32 value_len;
	u8 data[];	/* key, then value */
};

struct cref_table {
	struct mutex lock;
	struct rb_root root;
	u32 entries;
	u64 bytes;
	u64 generation;
	atomic64_t ok[NFKV_SET_COMMANDS + NFKV_GET_COMMANDS];
	atomic64_t failed[NFKV_SET_COMMANDS + NFKV_GET_COMMANDS];
};

static unsigned int cref_net_id;

static int keycmp(const u8 *a, u16 alen, const u8 *b, u16 blen)
{
	int c = memcmp(a, b, min(alen, blen));

	return c ? c : (int)alen - (int)blen;
}

static struct cref_entry *find(struct cref_table *t, const u8 *key, u16 len)
{
	struct rb_node *n = t->root.rb_node;

	while (n) {
		struct cref_entry *e = rb_entry(n, struct cref_entry, node);
		int c = keycmp(key, len, e->data, e->key_len);

		if (c < 0)
			n = n->rb_left;
		else if (c > 0)
			n = n->rb_right;
		else
			return e;
	}
	return NULL;
}

/* The first entry whose key is >= key. */
static struct cref_entry *lower_bound(struct cref_table *t, const u8 *key, u16 len)
{
	struct rb_node *n = t->root.rb_node;
	struct cref_entry *best = NULL;

	while (n) {
		struct cref_entry *e = rb_entry(n, struct cref_entry, node);
		int c = keycmp(key, len, e->data, e->key_len);

		if (c <= 0) {
			best = e;
			if (!c)
				break;
			n = n->rb_left;
		} else {
			n = n->rb_right;
		}
	}
	return best;
}

/* Links a new entry whose key is known to be absent. */
static void link_entry(struct cref_table *t, struct cref_entry *new)
{
	struct rb_node **p = &t->root.rb_node, *parent = NULL;

	while (*p) {
		struct cref_entry *e = rb_entry(*p, struct cref_entry, node);

		parent = *p;
		if (keycmp(new->data, new->key_len, e->data, e->key_len) < 0)
			p = &(*p)->rb_left;
		else
			p = &(*p)->rb_right;
	}
	rb_link_node(&new->node, parent, p);
	rb_insert_color(&new->node, &t->root);
}

static void free_tree(struct rb_root *root)
{
	struct cref_entry *e, *n;

	rbtree_postorder_for_each_entry_safe(e, n, root, node)
		kfree(e);
	*root = RB_ROOT;
}

struct cref_op {
	u16 op;
	u16 key_len;
	u32 flags;
	u32 value_len;
	u64 version;
	const u8 *key;
	struct cref_entry *new;	/* PUT: allocated before locking */
	struct cref_entry *old;	/* undo log: what this op displaced */
};

/* Parses one struct nfkv_op at *p; advances past it (and its padding in a batch). */
static int parse_op(const u8 **p, size_t *left, struct cref_op *o, bool batch)
{
	struct nfkv_op h;
	size_t len, padded;
	u32 f;

	if (*left < sizeof(h))
		return -EINVAL;
	memcpy(&h, *p, sizeof(h));
	f = h.flags;
	if (h.reserved || (h.op != NFKV_OP_PUT && h.op != NFKV_OP_DEL) ||
	    !h.key_len || h.key_len > NFKV_MAX_KEY_LEN || (f & ~NFKV_F_ALL))
		return -EINVAL;
	if ((f & NFKV_F_CREATE) && (f & (NFKV_F_REPLACE | NFKV_F_IF_VERSION)))
		return -EINVAL;
	if ((f & NFKV_F_IF_VERSION) ? !h.version : h.version)
		return -EINVAL;
	if (h.op == NFKV_OP_DEL && ((f & (NFKV_F_CREATE | NFKV_F_REPLACE)) || h.value_len))
		return -EINVAL;
	if (h.op == NFKV_OP_PUT && h.value_len > max_value_len)
		return -E2BIG;
	len = sizeof(h) + h.key_len + (size_t)h.value_len;
	padded = batch ? NFKV_ALIGN_UP(len) : len;
	if (*left < padded || memchr_inv(*p + len, 0, padded - len))
		return -EINVAL;
	o->op = h.op;
	o->key_len = h.key_len;
	o->flags = f;
	o->value_len = h.value_len;
	o->version = h.version;
	o->key = *p + sizeof(h);
	*p += padded;
	*left -= padded;
	return 0;
}

static int prepare(struct cref_op *o)
{
	if (o->op != NFKV_OP_PUT)
		return 0;
	o->new = kmalloc(struct_size(o->new, data, o->key_len + o->value_len), NFKV_GFP);
	if (!o->new)
		return -ENOMEM;
	o->new->key_len = o->key_len;
	o->new->value_len = o->value_len;
	memcpy(o->new->data, o->key, o->key_len + o->value_len);
	return 0;
}

static void undo(struct cref_table *t, struct cref_op *ops, unsigned int n)
{
	while (n--) {
		struct cref_op *o = &ops[n];

		if (o->new && o->old)
			rb_replace_node(&o->new->node, &o->old->node, &t->root);
		else if (o->new)
			rb_erase(&o->new->node, &t->root);
		else
			link_entry(t, o->old);
		o->old = NULL;
	}
}

/* Applies ops in order, all or nothing. Called with the table locked. */
static int apply_locked(struct cref_table *t, bool flush, struct cref_op *ops, unsigned int n,
			struct rb_root *flushed)
{
	u32 entries = t->entries;
	u64 bytes = t->bytes, generation = t->generation;
	unsigned int i;
	int err = 0;

	if (flush) {
		*flushed = t->root;
		t->root = RB_ROOT;
		t->entries = 0;
		t->bytes = 0;
		t->generation++;
	}
	for (i = 0; i < n; i++) {
		struct cref_op *o = &ops[i];
		struct cref_entry *old = find(t, o->key, o->key_len);

		if (o->op == NFKV_OP_PUT && (o->flags & NFKV_F_CREATE) && old)
			err = -EEXIST;
		else if (!old && (o->op == NFKV_OP_DEL || (o->flags & (NFKV_F_REPLACE | NFKV_F_IF_VERSION))))
			err = -ENOENT;
		else if (old && (o->flags & NFKV_F_IF_VERSION) && old->version != o->version)
			err = -ESTALE;
		else if (o->op == NFKV_OP_PUT && !old && t->entries >= max_entries)
			err = -ENOSPC;
		if (err)
			break;
		t->generation++;
		o->old = old;
		if (old) {
			t->bytes -= old->key_len + old->value_len;
			t->entries--;
		}
		if (o->op == NFKV_OP_PUT) {
			o->new->version = t->generation;
			if (old)
				rb_replace_node(&old->node, &o->new->node, &t->root);
			else
				link_entry(t, o->new);
			t->bytes += o->key_len + o->value_len;
			t->entries++;
		} else {
			rb_erase(&old->node, &t->root);
		}
	}
	if (!err)
		return 0;
	undo(t, ops, i);
	if (flush) {
		t->root = *flushed;
		*flushed = RB_ROOT;
	}
	t->entries = entries;
	t->bytes = bytes;
	t->generation = generation;
	return err;
}

static int write_ops(struct cref_table *t, bool flush, struct cref_op *ops, unsigned int n)
{
	struct rb_root flushed = RB_ROOT;
	unsigned int i;
	int err = 0;

	for (i = 0; i < n && !err; i++)
		err = prepare(&ops[i]);
	if (!err) {
		mutex_lock(&t->lock);
		err = apply_locked(t, flush, ops, n, &flushed);
		mutex_unlock(&t->lock);
	}
	for (i = 0; i < n; i++) {
		if (err)
			kfree(ops[i].new);
		else
			kfree(ops[i].old);
	}
	free_tree(&flushed);
	return err;
}

static int do_batch(struct cref_table *t, const u8 *buf, size_t len)
{
	struct nfkv_batch h;
	struct cref_op *ops;
	const u8 *p;
	size_t left;
	unsigned int i;
	int err = 0;

	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, buf, sizeof(h));
	if (h.flags & ~NFKV_BATCH_F_FLUSH)
		return -EINVAL;
	if (h.count > NFKV_MAX_BATCH_OPS)
		return -E2BIG;
	if ((len - sizeof(h)) / NFKV_ALIGN_UP(sizeof(struct nfkv_op) + 1) < h.count)
		return -EINVAL;
	ops = kvcalloc(max(h.count, 1U), sizeof(*ops), NFKV_GFP);
	if (!ops)
		return -ENOMEM;
	p = buf + sizeof(h);
	left = len - sizeof(h);
	for (i = 0; i < h.count && !err; i++)
		err = parse_op(&p, &left, &ops[i], true);
	if (!err && left)
		err = -EINVAL;
	if (!err)
		err = write_ops(t, h.flags & NFKV_BATCH_F_FLUSH, ops, h.count);
	kvfree(ops);
	return err;
}

static struct cref_table *table_of(struct sock *sk)
{
	return *(struct cref_table **)net_generic(sock_net(sk), cref_net_id);
}

static void count(struct cref_table *t, unsigned int index, unsigned int commands,
		  unsigned int cmd, int err)
{
	if (cmd < commands)
		atomic64_inc(err ? &t->failed[index] : &t->ok[index]);
}

static int do_set(struct cref_table *t, unsigned int cmd, const u8 *buf, size_t len)
{
	struct cref_op op = {};
	const u8 *p = buf;
	size_t left = len;
	int err;

	switch (cmd) {
	case NFKV_SO_SET_PUT - NFKV_BASE_CTL:
	case NFKV_SO_SET_DEL - NFKV_BASE_CTL:
		err = parse_op(&p, &left, &op, false);
		if (err)
			return err;
		if (left || op.op != (cmd ? NFKV_OP_DEL : NFKV_OP_PUT))
			return -EINVAL;
		return write_ops(t, false, &op, 1);
	case NFKV_SO_SET_FLUSH - NFKV_BASE_CTL:
		if (len != sizeof(struct nfkv_flush) || memchr_inv(buf, 0, len))
			return -EINVAL;
		return write_ops(t, true, NULL, 0);
	case NFKV_SO_SET_BATCH - NFKV_BASE_CTL:
		return do_batch(t, buf, len);
	}
	return -EOPNOTSUPP;
}

static int cref_set(struct sock *sk, int optval, sockptr_t arg, unsigned int len)
{
	struct cref_table *t = table_of(sk);
	unsigned int cmd = optval - optbase;
	u8 stack[256], *buf = stack;
	int err;

	if (!ns_capable(sock_net(sk)->user_ns, CAP_NET_ADMIN)) {
		err = -EPERM;
		goto out;
	}
	if (len > NFKV_MAX_REQUEST_LEN) {
		err = -E2BIG;
		goto out;
	}
	if (len > sizeof(stack)) {
		buf = kvmalloc(len, NFKV_GFP);
		if (!buf) {
			err = -ENOMEM;
			goto out;
		}
	}
	err = copy_from_sockptr(buf, arg, len) ? -EFAULT : do_set(t, cmd, buf, len);
	if (buf != stack)
		kvfree(buf);
out:
	count(t, cmd, NFKV_SET_COMMANDS, cmd, err);
	return err;
}

static int get_value(struct cref_table *t, void __user *user, int len)
{
	u8 req[sizeof(struct nfkv_get) + NFKV_MAX_KEY_LEN];
	struct nfkv_value reply = {};
	struct nfkv_get h;
	struct cref_entry *e;
	size_t n = min_t(size_t, len, sizeof(req));
	u8 *value;
	int err = 0;

	if (len < (int)sizeof(reply))
		return -EINVAL;
	if (copy_from_user(req, user, n))
		return -EFAULT;
	memcpy(&h, req, sizeof(h));
	if (h.reserved || h.reserved2 || !h.key_len || h.key_len > NFKV_MAX_KEY_LEN ||
	    n < sizeof(h) + h.key_len)
		return -EINVAL;
	mutex_lock(&t->lock);
	e = find(t, req + sizeof(h), h.key_len);
	if (!e) {
		mutex_unlock(&t->lock);
		return -ENOENT;
	}
	reply.version = e->version;
	reply.value_len = e->value_len;
	value = kmalloc(max(e->value_len, 1U), NFKV_GFP);
	if (value)
		memcpy(value, e->data + e->key_len, e->value_len);
	mutex_unlock(&t->lock);
	if (!value)
		return -ENOMEM;
	if (copy_to_user(user, &reply, sizeof(reply)))
		err = -EFAULT;
	else if (sizeof(reply) + reply.value_len > len)
		err = -EMSGSIZE;
	else if (copy_to_user(user + sizeof(reply), value, reply.value_len))
		err = -EFAULT;
	kfree(value);
	return err ? err : sizeof(reply) + reply.value_len;
}

static int get_list(struct cref_table *t, void __user *user, int len)
{
	u8 req[sizeof(struct nfkv_list) + 2 * NFKV_MAX_KEY_LEN];
	struct nfkv_list_reply reply = {};
	struct nfkv_list h;
	size_t n = min_t(size_t, len, sizeof(req)), room, used = sizeof(reply);
	const u8 *after, *prefix;
	struct cref_entry *e;
	u8 *page;
	int err = 0;

	if (len < (int)sizeof(reply))
		return -EINVAL;
	if (copy_from_user(req, user, n))
		return -EFAULT;
	memcpy(&h, req, sizeof(h));
	if (h.flags || h.after_len > NFKV_MAX_KEY_LEN || h.prefix_len > NFKV_MAX_KEY_LEN ||
	    n < sizeof(h) + h.after_len + h.prefix_len)
		return -EINVAL;
	after = req + sizeof(h);
	prefix = after + h.after_len;
	room = min_t(size_t, len, LIST_PAGE_MAX);
	page = kvzalloc(room, NFKV_GFP);
	if (!page)
		return -ENOMEM;
	mutex_lock(&t->lock);
	if (h.after_len && keycmp(after, h.after_len, prefix, h.prefix_len) >= 0)
		e = lower_bound(t, after, h.after_len);
	else
		e = lower_bound(t, prefix, h.prefix_len);
	for (; e; e = rb_entry_safe(rb_next(&e->node), struct cref_entry, node)) {
		struct nfkv_list_entry le = {};
		size_t size = NFKV_ALIGN_UP(sizeof(le) + e->key_len + e->value_len);

		if (h.after_len && !keycmp(e->data, e->key_len, after, h.after_len))
			continue;
		if (e->key_len < h.prefix_len || memcmp(e->data, prefix, h.prefix_len))
			break;
		if (room - used < size) {
			reply.flags = NFKV_LIST_F_MORE;
			if (!reply.count) {
				reply.size = sizeof(reply) + size;
				err = -EMSGSIZE;
			}
			break;
		}
		le.version = e->version;
		le.key_len = e->key_len;
		le.value_len = e->value_len;
		memcpy(page + used, &le, sizeof(le));
		memcpy(page + used + sizeof(le), e->data, e->key_len + e->value_len);
		used += size;
		reply.count++;
	}
	reply.generation = t->generation;
	mutex_unlock(&t->lock);
	if (!err)
		reply.size = used;
	memcpy(page, &reply, sizeof(reply));
	if (copy_to_user(user, page, err ? sizeof(reply) : used))
		err = -EFAULT;
	kvfree(page);
	return err ? err : used;
}

static int do_get(struct cref_table *t, unsigned int cmd, void __user *user, int len)
{
	switch (cmd) {
	case NFKV_SO_GET_INFO - NFKV_BASE_CTL: {
		struct nfkv_info info = {
			.abi_version = NFKV_ABI_VERSION,
			.optbase = optbase,
			.max_key_len = NFKV_MAX_KEY_LEN,
			.max_value_len = max_value_len,
			.max_entries = max_entries,
			.max_batch_ops = NFKV_MAX_BATCH_OPS,
			.module_version = "cref",
		};

		if (len < (int)sizeof(info))
			return -EINVAL;
		mutex_lock(&t->lock);
		info.entries = t->entries;
		info.bytes_used = t->bytes;
		info.generation = t->generation;
		mutex_unlock(&t->lock);
		return copy_to_user(user, &info, sizeof(info)) ? -EFAULT : sizeof(info);
	}
	case NFKV_SO_GET_VALUE - NFKV_BASE_CTL:
		return get_value(t, user, len);
	case NFKV_SO_GET_LIST - NFKV_BASE_CTL:
		return get_list(t, user, len);
	case NFKV_SO_GET_STATS - NFKV_BASE_CTL: {
		struct nfkv_stats s = {};
		int i;

		if (len < (int)sizeof(s))
			return -EINVAL;
		for (i = 0; i < NFKV_SET_COMMANDS; i++) {
			s.set[i].ok = atomic64_read(&t->ok[i]);
			s.set[i].failed = atomic64_read(&t->failed[i]);
		}
		for (i = 0; i < NFKV_GET_COMMANDS; i++) {
			s.get[i].ok = atomic64_read(&t->ok[NFKV_SET_COMMANDS + i]);
			s.get[i].failed = atomic64_read(&t->failed[NFKV_SET_COMMANDS + i]);
		}
		return copy_to_user(user, &s, sizeof(s)) ? -EFAULT : sizeof(s);
	}
	}
	return -EOPNOTSUPP;
}

static int cref_get(struct sock *sk, int optval, void __user *user, int *len)
{
	struct cref_table *t = table_of(sk);
	unsigned int cmd = optval - optbase;
	int ret;

	if (!ns_capable(sock_net(sk)->user_ns, CAP_NET_ADMIN))
		ret = -EPERM;
	else
		ret = do_get(t, cmd, user, *len);
	count(t, NFKV_SET_COMMANDS + cmd, NFKV_GET_COMMANDS, cmd, ret < 0 ? ret : 0);
	if (ret < 0)
		return ret;
	*len = ret;
	return 0;
}

static int __net_init cref_net_init(struct net *net)
{
	struct cref_table *t = kzalloc(sizeof(*t), GFP_KERNEL);

	if (!t)
		return -ENOMEM;
	mutex_init(&t->lock);
	t->root = RB_ROOT;
	*(struct cref_table **)net_generic(net, cref_net_id) = t;
	return 0;
}

static void __net_exit cref_net_exit(struct net *net)
{
	struct cref_table *t = *(struct cref_table **)net_generic(net, cref_net_id);

	free_tree(&t->root);
	kfree(t);
}

static struct pernet_operations cref_net_ops = {
	.init = cref_net_init,
	.exit = cref_net_exit,
	.id = &cref_net_id,
	.size = sizeof(struct cref_table *),
};

static struct nf_sockopt_ops cref_sockopts = {
	.pf = PF_INET,
	.set = cref_set,
	.get = cref_get,
	.owner = THIS_MODULE,
};

static int __init cref_init(void)
{
	int err;

	if (max_value_len > NFKV_VALUE_LEN_CAP || !max_entries || optbase > INT_MAX - NFKV_SO_RANGE)
		return -EINVAL;
	cref_sockopts.set_optmin = cref_sockopts.get_optmin = optbase;
	cref_sockopts.set_optmax = cref_sockopts.get_optmax = optbase + NFKV_SO_RANGE;
	err = register_pernet_subsys(&cref_net_ops);
	if (err)
		return err;
	err = nf_register_sockopt(&cref_sockopts);
	if (err) {
		pr_err("nfkv_cref: optnames %u.. in use\n", optbase);
		unregister_pernet_subsys(&cref_net_ops);
	}
	return err;
}

static void __exit cref_exit(void)
{
	nf_unregister_sockopt(&cref_sockopts);
	unregister_pernet_subsys(&cref_net_ops);
}

module_init(cref_init);
module_exit(cref_exit);
MODULE_DESCRIPTION("nfkv ABI in C: reference for the benchmarks");
MODULE_LICENSE("GPL");
