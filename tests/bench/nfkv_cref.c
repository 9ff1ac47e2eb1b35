// SPDX-License-Identifier: GPL-2.0
/*
 * nfkv_cref: the nfkv ABI (include/nfkv.h) written in C the way an
 * in-tree nf_sockopt user would write it, as the benchmarks' reference.
 * Same commands and semantics (all-or-nothing batches whose records see
 * their predecessors, versions and generation, EMSGSIZE with the needed
 * size), same permission check (CAP_NET_ADMIN over the socket's netns), and
 * the Rust module's design, written as C in the kernel does it:
 *
 * - one mutex per namespace table for writers, never held across a user
 *   copy; every entry a write needs is allocated and filled before locking;
 * - readers take no lock: the table is a latch of two rbtrees (as
 *   rbtree_latch.h, but a whole write at a time): a write changes tree 0
 *   while readers search tree 1, flips them to tree 0 and then brings tree
 *   1 up to date by the keys it wrote, so a batch is seen whole or not at
 *   all; entries are freed with kvfree_rcu;
 * - an entry is one allocation (two tree nodes, reference count, lengths,
 *   version, key and value): kmalloc up to a page, kvmalloc above;
 * - a request of up to 512 bytes is copied onto the stack in one piece; a
 *   longer PUT has its key and value copied from the caller straight into
 *   the entry, a longer batch into one buffer;
 * - a single PUT or DEL descends the tree once and keeps no undo log; a
 *   batch is applied in place with one;
 * - GET searches under RCU and copies the reply out from there with page
 *   faults disabled; only if that faults does it take a reference on the
 *   entry and copy after leaving RCU; the last reference frees;
 * - LIST sizes its page by what the table holds (on the stack up to 512
 *   bytes), filled under the lock and copied out after;
 * - keys are compared inline, eight bytes at a time;
 * - expiry (ABI 3): an entry carries a jiffies64 deadline (0: never) set
 *   under the lock from one "now" per write; every read and every write's
 *   conditions treat an entry past it as absent; a delayed work per table
 *   (system_unbound_wq), armed only while some entry has a deadline, at the
 *   earliest one but at most once a second, unlinks expired entries in
 *   chunks under the lock and frees them after unlocking;
 * - watch (ABI 4): from a namespace's first NFKV_SO_GET_WATCH on, every
 *   change is appended under the lock to its change log (allocated then,
 *   watch_log_kib KiB): a byte ring of events (wire header and key, oldest
 *   overwritten first) and a ring of their offsets, so event `g` is one
 *   lookup; a watcher fills a page from it under the lock, attaching a
 *   put's value if the entry still has that version, and if there is
 *   nothing yet sleeps on the table's wait queue with the lock dropped
 *   (writers wake it only when a watcher waits), up to its timeout;
 *   -ERESTARTSYS on a signal.
 */
#include <linux/capability.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/percpu.h>
#include <linux/rbtree.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/seqlock.h>
#include <linux/slab.h>
#include <linux/sockptr.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <linux/jiffies.h>
#include <linux/sched/signal.h>
#include <linux/wait.h>
#include <linux/unaligned.h>
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
static unsigned int watch_log_kib = 1024;
module_param(watch_log_kib, uint, 0444);

#define LIST_PAGE_MAX (1U << 20)
/* Requests, and LIST pages, up to this size live on the stack. */
#define ON_STACK_MAX 512

/* Entries the reaper unlinks, and looks at, per hold of the lock. */
#define REAP_CHUNK 64
#define REAP_SCAN 1024

/* Watch: most bytes filled per call, the page tried first, events looked at per call. */
#define WATCH_PAGE_MAX (1U << 20)
#define WATCH_PAGE (64U << 10)
#define WATCH_SCAN_MAX 16384
#define LOG_MIN_BYTES 4096

/* The writers' tree, where every change is made first, and its copy. */
#define WRITERS 0
#define COPY 1

struct cref_entry {
	struct rb_node node[2];	/* in the writers' tree, and in its copy */
	refcount_t ref;		/* the table's, and each GET's copying it out */
	u32 lens;		/* key_len << 24 | value_len */
	u64 version;
	u64 expires;		/* jiffies64 deadline; 0: never expires */
	u8 data[];		/* key, then value */
};

/* Whether `e` is past its deadline at `now`: absent to every command. */
static __always_inline bool entry_expired(const struct cref_entry *e, u64 now)
{
	return e->expires && now >= e->expires;
}

/*
 * GET's and LIST's ttl_ms of a live entry: the whole jiffies left after the
 * current one, in ms (what it surely has, never over its lifetime), at
 * least 1; 0: never.
 */
static u32 entry_ttl_ms(const struct cref_entry *e, u64 now)
{
	if (!e->expires)
		return 0;
	return clamp_t(u64, jiffies64_to_msecs(e->expires - now - 1), 1, NFKV_MAX_TTL_MS);
}

/* Jiffies in `ms`, rounded up, in 64 bits: msecs_to_jiffies() gives up at 2^31 ms. */
static u64 ttl_jiffies(u32 ms)
{
	return DIV_ROUND_UP_ULL((u64)ms * HZ, MSEC_PER_SEC);
}

static unsigned int entry_key_len(const struct cref_entry *e)
{
	return e->lens >> 24;
}

static unsigned int entry_value_len(const struct cref_entry *e)
{
	return e->lens & 0xffffff;
}

struct cref_stats {
	u64 ok[NFKV_SET_COMMANDS + NFKV_GET_COMMANDS];
	u64 failed[NFKV_SET_COMMANDS + NFKV_GET_COMMANDS];
};

/*
 * A table's change log: events start + 1 .. start + count, each its struct
 * nfkv_event (flags and value_len 0) and key, padded to NFKV_ALIGN, in a
 * byte ring of `size` bytes from `tail` (`used` bytes); offsets[] is a ring
 * of `slots` from `first`: event start + 1 + i is at offsets[first + i].
 * An event may wrap at the end of the ring.
 */
struct cref_log {
	u8 *data;		/* NULL until the namespace's first watch */
	u32 *offsets;
	u32 size, slots;
	u32 first, count;
	u32 tail, used;
	u64 start;
};

struct cref_table {
	struct mutex lock;
	struct rb_root root[2];
	seqcount_latch_t seq;	/* even: readers search root[0]; odd: root[1] */
	bool writing;		/* readers are on root[1] while root[0] changes */
	u32 entries;
	u32 timed;		/* entries with a deadline */
	u64 bytes;
	u64 generation;
	struct delayed_work reaper;
	u64 reap_at;		/* when the reaper is due; 0: not armed */
	u64 last_reap;		/* when it last started */
	struct cref_stats __percpu *stats;	/* a copy per CPU: counting shares no line */
	struct cref_log log;
	unsigned int watchers;	/* waiting on `changed`; under the lock */
	wait_queue_head_t changed;
};

static unsigned int cref_net_id;

/* a + b in the ring of `size` bytes (a, b < size). */
static __always_inline u32 ring_add(u32 a, u32 b, u32 size)
{
	a += b;
	return a >= size ? a - size : a;
}

static void ring_write(struct cref_log *l, u32 at, const void *src, u32 n)
{
	u32 first = min(l->size - at, n);

	memcpy(l->data + at, src, first);
	memcpy(l->data, src + first, n - first);
}

static void ring_read(const struct cref_log *l, u32 at, void *dst, u32 n)
{
	u32 first = min(l->size - at, n);

	memcpy(dst, l->data + at, first);
	memcpy(dst + first, l->data, n - first);
}

static void log_drop_oldest(struct cref_log *l)
{
	u16 klen;
	u32 len;

	ring_read(l, ring_add(l->tail, offsetof(struct nfkv_event, key_len), l->size), &klen,
		  sizeof(klen));
	len = NFKV_ALIGN_UP(sizeof(struct nfkv_event) + klen);

	l->tail = ring_add(l->tail, len, l->size);
	l->used -= min(len, l->used);
	l->first = l->first + 1 == l->slots ? 0 : l->first + 1;
	l->count--;
	l->start++;
}

/*
 * Appends the event of generation `g` (of a write whose last change is
 * `last`) of `type` and `key`, dropping the oldest events it needs room
 * for. One that does not follow the last one (none should) empties the
 * log first. Under the lock.
 */
static void log_append(struct cref_log *l, u64 g, u64 last, u8 type, const u8 *key, u16 klen)
{
	struct nfkv_event ev = { .generation = g, .last = last, .type = type, .key_len = klen };
	u32 len = NFKV_ALIGN_UP(sizeof(ev) + klen), head, slot;

	if (g != l->start + l->count + 1) {
		l->count = 0;
		l->used = 0;
		l->start = g - 1;
	}
	while (l->count && (l->used + len > l->size || l->count == l->slots))
		log_drop_oldest(l);
	head = ring_add(l->tail, l->used, l->size);
	ring_write(l, head, &ev, sizeof(ev));
	ring_write(l, ring_add(head, sizeof(ev), l->size), key, klen);
	slot = l->first + l->count;
	l->offsets[slot >= l->slots ? slot - l->slots : slot] = head;
	l->count++;
	l->used += len;
}

/* Logs a change of `t` if it keeps a log. */
static __always_inline void log_change(struct cref_table *t, u64 g, u64 last, u8 type,
				       const u8 *key, u16 klen)
{
	if (t->log.data)
		log_append(&t->log, g, last, type, key, klen);
}

/* Wakes the watchers, if any wait, of `t`, changed since generation `before`. */
static __always_inline void wake_watchers(struct cref_table *t, u64 before)
{
	if (t->watchers && t->generation != before)
		wake_up_all(&t->changed);
}

static __always_inline int keycmp(const u8 *a, unsigned int alen, const u8 *b, unsigned int blen)
{
	unsigned int n = min(alen, blen), i;

	for (i = 0; i + 8 <= n; i += 8) {
		u64 x = get_unaligned_be64(a + i), y = get_unaligned_be64(b + i);

		if (x != y)
			return x < y ? -1 : 1;
	}
	for (; i < n; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return (int)alen - (int)blen;
}

static struct cref_entry *entry_alloc(unsigned int klen, unsigned int vlen)
{
	struct cref_entry *e;

	BUILD_BUG_ON(NFKV_MAX_KEY_LEN > 0xff || NFKV_VALUE_LEN_CAP > 0xffffff);
	e = kvmalloc(struct_size(e, data, klen + vlen), NFKV_GFP);
	if (e) {
		refcount_set(&e->ref, 1);
		e->lens = klen << 24 | vlen;
	}
	return e;
}

/* Drops a reference: the table's, or a GET's; a reader may still be on it. */
static void entry_put(struct cref_entry *e)
{
	if (e && refcount_dec_and_test(&e->ref))
		kvfree_rcu_mightsleep(e);
}

/* The entry whose node in tree `idx` is `n`. */
static __always_inline struct cref_entry *entry_of(struct rb_node *n, int idx)
{
	return container_of(n - idx, struct cref_entry, node[0]);
}

/*
 * The entry of `key` in tree `idx` (writers only), or NULL with *link and
 * *parent where it would be linked.
 */
static struct cref_entry *descend(struct cref_table *t, int idx, const u8 *key,
				  unsigned int len, struct rb_node ***link, struct rb_node **parent)
{
	struct rb_node **p = &t->root[idx].rb_node;

	*parent = NULL;
	*link = NULL;
	while (*p) {
		struct cref_entry *e = entry_of(*p, idx);
		int c = keycmp(key, len, e->data, entry_key_len(e));

		if (!c)
			return e;
		*parent = *p;
		p = c < 0 ? &(*p)->rb_left : &(*p)->rb_right;
	}
	*link = p;
	return NULL;
}

static struct cref_entry *find(struct cref_table *t, const u8 *key, unsigned int len)
{
	struct rb_node **link, *parent;

	return descend(t, WRITERS, key, len, &link, &parent);
}

/* The entry of `key` as the last whole write left the table; under RCU. */
static struct cref_entry *find_rcu(struct cref_table *t, const u8 *key, unsigned int len)
{
	struct cref_entry *found;
	unsigned int seq;

	do {
		struct rb_node *n;
		int idx;

		seq = read_seqcount_latch(&t->seq);
		idx = seq & 1;
		n = rcu_dereference_raw(t->root[idx].rb_node);
		found = NULL;
		while (n) {
			struct cref_entry *e = entry_of(n, idx);
			int c = keycmp(key, len, e->data, entry_key_len(e));

			if (!c) {
				found = e;
				break;
			}
			if (c < 0)
				n = rcu_dereference_raw(n->rb_left);
			else
				n = rcu_dereference_raw(n->rb_right);
		}
	} while (read_seqcount_latch_retry(&t->seq, seq));
	return found;
}

/* Sends readers to tree 1 before tree 0 first changes in a write. */
static void begin_write(struct cref_table *t)
{
	if (!t->writing) {
		t->writing = true;
		write_seqcount_latch_begin(&t->seq);
	}
}

/* Makes tree 1's entry for `key` the one tree 0 has (or none). */
static void sync_key(struct cref_table *t, const u8 *key, unsigned int len)
{
	struct rb_node **link, *parent;
	struct cref_entry *want = find(t, key, len);
	struct cref_entry *old = descend(t, COPY, key, len, &link, &parent);

	if (want == old)
		return;
	if (want && old) {
		rb_replace_node_rcu(&old->node[COPY], &want->node[COPY], &t->root[COPY]);
	} else if (want) {
		rb_link_node_rcu(&want->node[COPY], parent, link);
		rb_insert_color(&want->node[COPY], &t->root[COPY]);
	} else {
		rb_erase(&old->node[COPY], &t->root[COPY]);
	}
}

/* Rebuilds tree 1 from tree 0, in order (after a flush). */
static void rebuild_copy(struct cref_table *t)
{
	struct rb_node *n, *last = NULL;

	WRITE_ONCE(t->root[COPY].rb_node, NULL);
	for (n = rb_first(&t->root[WRITERS]); n; n = rb_next(n)) {
		struct cref_entry *e = entry_of(n, WRITERS);

		rb_link_node_rcu(&e->node[COPY], last, last ? &last->rb_right : &t->root[COPY].rb_node);
		rb_insert_color(&e->node[COPY], &t->root[COPY]);
		last = &e->node[COPY];
	}
}

/* The first entry whose key is >= key. */
static struct cref_entry *lower_bound(struct cref_table *t, const u8 *key, u16 len)
{
	struct rb_node *n = t->root[WRITERS].rb_node;
	struct cref_entry *best = NULL;

	while (n) {
		struct cref_entry *e = entry_of(n, WRITERS);
		int c = keycmp(key, len, e->data, entry_key_len(e));

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
	struct rb_node **link, *parent;

	descend(t, WRITERS, new->data, entry_key_len(new), &link, &parent);
	begin_write(t);
	rb_link_node_rcu(&new->node[WRITERS], parent, link);
	rb_insert_color(&new->node[WRITERS], &t->root[WRITERS]);
}

/* Drops the table's reference on every entry of a tree taken out of it. */
static void free_tree(struct rb_root *root)
{
	struct cref_entry *e, *n;

	rbtree_postorder_for_each_entry_safe(e, n, root, node[WRITERS])
		entry_put(e);
	*root = RB_ROOT;
}

struct cref_op {
	u16 op;
	u16 key_len;
	u32 flags;
	u32 value_len;
	u32 ttl_ms;
	u64 version;
	const u8 *key;
	struct cref_entry *new;	/* PUT: allocated before locking */
	struct cref_entry *old;	/* undo log: what this op displaced */
};

/* Checks a struct nfkv_op header's fields (not the bytes after it). */
static int parse_header(const struct nfkv_op *h, struct cref_op *o)
{
	u32 f = h->flags;

	if ((h->op != NFKV_OP_PUT && h->op != NFKV_OP_DEL) ||
	    !h->key_len || h->key_len > NFKV_MAX_KEY_LEN || (f & ~NFKV_F_ALL))
		return -EINVAL;
	if ((f & NFKV_F_TTL) ? !h->ttl_ms : h->ttl_ms)
		return -EINVAL;
	if ((f & NFKV_F_CREATE) && (f & (NFKV_F_REPLACE | NFKV_F_IF_VERSION)))
		return -EINVAL;
	if ((f & NFKV_F_IF_VERSION) ? !h->version : h->version)
		return -EINVAL;
	if (h->op == NFKV_OP_DEL &&
	    ((f & (NFKV_F_CREATE | NFKV_F_REPLACE | NFKV_F_TTL | NFKV_F_KEEP_TTL)) || h->value_len))
		return -EINVAL;
	if (h->op == NFKV_OP_PUT && h->value_len > max_value_len)
		return -E2BIG;
	o->op = h->op;
	o->key_len = h->key_len;
	o->flags = f;
	o->value_len = h->value_len;
	o->ttl_ms = h->ttl_ms;
	o->version = h->version;
	return 0;
}

/* Parses one struct nfkv_op at *p; advances past it (and its padding in a batch). */
static int parse_op(const u8 **p, size_t *left, struct cref_op *o, bool batch)
{
	struct nfkv_op h;
	size_t len, padded;
	int err;

	if (*left < sizeof(h))
		return -EINVAL;
	memcpy(&h, *p, sizeof(h));
	err = parse_header(&h, o);
	if (err)
		return err;
	len = sizeof(h) + h.key_len + (size_t)h.value_len;
	padded = batch ? NFKV_ALIGN_UP(len) : len;
	if (*left < padded || memchr_inv(*p + len, 0, padded - len))
		return -EINVAL;
	o->key = *p + sizeof(h);
	*p += padded;
	*left -= padded;
	return 0;
}

static int prepare(struct cref_op *o)
{
	if (o->op != NFKV_OP_PUT)
		return 0;
	o->new = entry_alloc(o->key_len, o->value_len);
	if (!o->new)
		return -ENOMEM;
	memcpy(o->new->data, o->key, o->key_len + o->value_len);
	return 0;
}

/*
 * Whether op `o` may apply to the entry `old` of its key (NULL: none linked)
 * at `now`: an expired `old` is absent to the conditions, but a put over it
 * takes its place (the table does not grow).
 */
static int check_op(struct cref_table *t, const struct cref_op *o, const struct cref_entry *old,
		    u64 now)
{
	const struct cref_entry *live = old && !entry_expired(old, now) ? old : NULL;

	if (o->op == NFKV_OP_PUT && (o->flags & NFKV_F_CREATE) && live)
		return -EEXIST;
	if (!live && (o->op == NFKV_OP_DEL || (o->flags & (NFKV_F_REPLACE | NFKV_F_IF_VERSION))))
		return -ENOENT;
	if (live && (o->flags & NFKV_F_IF_VERSION) && live->version != o->version)
		return -ESTALE;
	if (o->op == NFKV_OP_PUT && !old && t->entries >= max_entries)
		return -ENOSPC;
	return 0;
}

/* The deadline of a put's entry replacing `old` (NULL: none) at `now`. */
static u64 put_deadline(const struct cref_op *o, const struct cref_entry *old, u64 now)
{
	if ((o->flags & NFKV_F_KEEP_TTL) && old && !entry_expired(old, now))
		return old->expires;
	if (o->flags & NFKV_F_TTL)
		return now + ttl_jiffies(o->ttl_ms);
	return 0;
}

/*
 * Makes sure the reaper runs by `deadline`, but not within a second of its
 * last start. Under the lock.
 */
static void arm_reaper(struct cref_table *t, u64 deadline, u64 now)
{
	u64 at = max(deadline, t->last_reap + HZ);

	if (t->reap_at && t->reap_at <= at)
		return;
	t->reap_at = at;
	mod_delayed_work(system_unbound_wq, &t->reaper, at > now ? at - now : 0);
}

/*
 * Applies op `o`, which check_op() allowed, to the entry `old` of its key,
 * or links its entry at `link` under `parent` (descend()'s answer).
 */
static void apply_op(struct cref_table *t, struct cref_op *o, struct cref_entry *old,
		     struct rb_node **link, struct rb_node *parent, u64 now)
{
	struct rb_root *root = &t->root[WRITERS];

	begin_write(t);
	t->generation++;
	o->old = old;
	if (old) {
		t->bytes -= entry_key_len(old) + entry_value_len(old);
		t->entries--;
		t->timed -= !!old->expires;
	}
	if (o->op == NFKV_OP_DEL) {
		rb_erase(&old->node[WRITERS], root);
		return;
	}
	o->new->version = t->generation;
	o->new->expires = put_deadline(o, old, now);
	if (o->new->expires) {
		t->timed++;
		/* As the module: also for a batch that fails later (a spare run). */
		arm_reaper(t, o->new->expires, now);
	}
	if (old) {
		rb_replace_node_rcu(&old->node[WRITERS], &o->new->node[WRITERS], root);
	} else {
		rb_link_node_rcu(&o->new->node[WRITERS], parent, link);
		rb_insert_color(&o->new->node[WRITERS], root);
	}
	t->bytes += o->key_len + o->value_len;
	t->entries++;
}

/* Checks op `o` against the table at `now` and applies it: one descent. */
static int write_op_locked(struct cref_table *t, struct cref_op *o, u64 now)
{
	struct rb_node **link, *parent;
	struct cref_entry *old = descend(t, WRITERS, o->key, o->key_len, &link, &parent);
	int err = check_op(t, o, old, now);

	if (!err)
		apply_op(t, o, old, link, parent, now);
	return err;
}

static void undo(struct cref_table *t, struct cref_op *ops, unsigned int n)
{
	while (n--) {
		struct cref_op *o = &ops[n];

		if (o->new && o->old)
			rb_replace_node_rcu(&o->new->node[WRITERS], &o->old->node[WRITERS],
					    &t->root[WRITERS]);
		else if (o->new)
			rb_erase(&o->new->node[WRITERS], &t->root[WRITERS]);
		else
			link_entry(t, o->old);
		o->old = NULL;
	}
}

/* Applies ops in order, all or nothing, at `now`. Called with the table locked. */
static int apply_locked(struct cref_table *t, bool flush, struct cref_op *ops, unsigned int n,
			struct rb_root *flushed, u64 now)
{
	u32 entries = t->entries, timed = t->timed;
	u64 bytes = t->bytes, generation = t->generation;
	unsigned int i;
	int err = 0;

	if (flush) {
		begin_write(t);
		*flushed = t->root[WRITERS];
		WRITE_ONCE(t->root[WRITERS].rb_node, NULL);
		t->entries = 0;
		t->timed = 0;
		t->bytes = 0;
		t->generation++;
	}
	for (i = 0; i < n && !err; i++)
		err = write_op_locked(t, &ops[i], now);
	if (!err)
		return 0;
	/* ops[i - 1] failed and changed nothing: undo those before it. */
	undo(t, ops, i - 1);
	if (flush) {
		rcu_assign_pointer(t->root[WRITERS].rb_node, flushed->rb_node);
		*flushed = RB_ROOT;
	}
	t->entries = entries;
	t->timed = timed;
	t->bytes = bytes;
	t->generation = generation;
	return err;
}

/*
 * Frees what a write leaves: on success what it displaced (a reader may
 * still be on it), on failure the entries it had prepared (an undone one
 * was linked, so a reader may have reached it too).
 */
static void release_ops(struct cref_op *ops, unsigned int n, int err)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (err)
			entry_put(ops[i].new);
		else
			entry_put(ops[i].old);
	}
}

/*
 * Makes the write visible to readers at once, if it changed tree 0:
 * readers go to tree 0, then tree 1 is brought up to date (by the keys of
 * the `n` ops applied, or whole after a flush).
 */
static void publish(struct cref_table *t, bool flush, struct cref_op *ops, unsigned int n)
{
	unsigned int i;

	if (!t->writing)
		return;
	write_seqcount_latch(&t->seq);
	if (flush)
		rebuild_copy(t);
	else
		for (i = 0; i < n; i++)
			sync_key(t, ops[i].key, ops[i].key_len);
	write_seqcount_latch_end(&t->seq);
	t->writing = false;
}

/* Logs the events of a write applied whole: a flush first, then ops[0..n). */
static void log_write(struct cref_table *t, bool flush, const struct cref_op *ops, unsigned int n)
{
	u64 last = t->generation, g = last - n - flush;
	unsigned int i;

	if (!t->log.data)
		return;
	if (flush)
		log_append(&t->log, ++g, last, NFKV_EVENT_FLUSH, NULL, 0);
	for (i = 0; i < n; i++)
		log_append(&t->log, ++g, last,
			   ops[i].op == NFKV_OP_PUT ? NFKV_EVENT_PUT : NFKV_EVENT_DEL,
			   ops[i].key, ops[i].key_len);
}

static int write_one(struct cref_table *t, struct cref_op *o)
{
	u64 now, before;
	int err;

	/* Checked before it changes anything: no undo log. */
	mutex_lock(&t->lock);
	now = get_jiffies_64();
	before = t->generation;
	err = write_op_locked(t, o, now);
	publish(t, false, o, err ? 0 : 1);
	if (!err) {
		log_change(t, t->generation, t->generation,
			   o->op == NFKV_OP_PUT ? NFKV_EVENT_PUT : NFKV_EVENT_DEL, o->key, o->key_len);
		wake_watchers(t, before);
	}
	mutex_unlock(&t->lock);
	release_ops(o, 1, err);
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
		u64 before;

		mutex_lock(&t->lock);
		before = t->generation;
		err = apply_locked(t, flush, ops, n, &flushed, get_jiffies_64());
		/* A failed write left tree 0 as tree 1 still is. */
		publish(t, flush && !err, ops, err ? 0 : n);
		if (!err) {
			log_write(t, flush, ops, n);
			wake_watchers(t, before);
		}
		mutex_unlock(&t->lock);
	}
	release_ops(ops, n, err);
	free_tree(&flushed);
	return err;
}

/*
 * The reaper: looks at up to REAP_SCAN entries per hold of the lock,
 * resuming at the key after the last one it looked at, unlinks those
 * expired by then, up to REAP_CHUNK (a write each: the generation moves by
 * one per entry), publishes, and frees them after unlocking. At the end,
 * while entries with a deadline remain, it arms itself for the earliest
 * deadline it saw (or a second on).
 */
static void reap(struct work_struct *work)
{
	struct cref_table *t = container_of(to_delayed_work(work), struct cref_table, reaper);
	struct cref_entry *dead[REAP_CHUNK];
	u8 resume[NFKV_MAX_KEY_LEN];
	unsigned int resume_len = 0, n, i;
	u64 now, next = 0;
	bool first = true, more;

	do {
		struct cref_entry *e;
		unsigned int seen = 0;

		n = 0;
		mutex_lock(&t->lock);
		now = get_jiffies_64();
		if (first) {
			t->reap_at = 0;
			t->last_reap = now;
			e = rb_entry_safe(rb_first(&t->root[WRITERS]), struct cref_entry,
					  node[WRITERS]);
			first = false;
		} else {
			e = lower_bound(t, resume, resume_len);
		}
		for (; e && n < REAP_CHUNK && seen < REAP_SCAN; seen++,
		     e = rb_entry_safe(rb_next(&e->node[WRITERS]), struct cref_entry, node[WRITERS])) {
			if (entry_expired(e, now))
				dead[n++] = e;
			else if (e->expires && (!next || e->expires < next))
				next = e->expires;
		}
		more = e;
		if (more) {
			resume_len = entry_key_len(e);
			memcpy(resume, e->data, resume_len);
		}
		if (n) {
			begin_write(t);
			for (i = 0; i < n; i++) {
				rb_erase(&dead[i]->node[WRITERS], &t->root[WRITERS]);
				t->bytes -= entry_key_len(dead[i]) + entry_value_len(dead[i]);
				t->entries--;
				t->timed--;
				t->generation++;
				log_change(t, t->generation, t->generation, NFKV_EVENT_EXPIRE,
					   dead[i]->data, entry_key_len(dead[i]));
			}
			write_seqcount_latch(&t->seq);
			for (i = 0; i < n; i++)
				sync_key(t, dead[i]->data, entry_key_len(dead[i]));
			write_seqcount_latch_end(&t->seq);
			t->writing = false;
			wake_watchers(t, t->generation - n);
		}
		/* Entries linked behind the walk armed it themselves. */
		if (!more && t->timed)
			arm_reaper(t, next ?: now + HZ, now);
		mutex_unlock(&t->lock);
		for (i = 0; i < n; i++)
			entry_put(dead[i]);
		cond_resched();
	} while (more);
}

static int do_batch(struct cref_table *t, const u8 *buf, size_t len)
{
	struct nfkv_batch h;
	struct cref_op *ops;
	const u8 *p;
	size_t left;
	unsigned int i;
	int err = 0;

	memcpy(&h, buf, sizeof(h));
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

/* A batch header's checks, made before anything past it is copied. */
static int check_batch(const struct nfkv_batch *h, size_t len)
{
	if (h->flags & ~NFKV_BATCH_F_FLUSH)
		return -EINVAL;
	if (h->count > NFKV_MAX_BATCH_OPS)
		return -E2BIG;
	if ((len - sizeof(*h)) / NFKV_ALIGN_UP(sizeof(struct nfkv_op) + 1) < h->count)
		return -EINVAL;
	return 0;
}

static struct cref_table *table_of(struct sock *sk)
{
	return *(struct cref_table **)net_generic(sock_net(sk), cref_net_id);
}

static void count_call(struct cref_table *t, unsigned int index, unsigned int commands,
		  unsigned int cmd, int err)
{
	if (cmd >= commands)
		return;
	if (err)
		this_cpu_inc(t->stats->failed[index]);
	else
		this_cpu_inc(t->stats->ok[index]);
}

/* A PUT of up to ON_STACK_MAX bytes (at `buf`), or, above, read from `arg` into its entry. */
static int do_put(struct cref_table *t, const u8 *buf, sockptr_t arg, size_t len)
{
	struct cref_op op = {};
	struct nfkv_op h;
	int err;

	if (len <= ON_STACK_MAX) {
		const u8 *p = buf;
		size_t left = len;

		err = parse_op(&p, &left, &op, false);
		if (err)
			return err;
		if (left || op.op != NFKV_OP_PUT)
			return -EINVAL;
		err = prepare(&op);
		if (err)
			return err;
		return write_one(t, &op);
	}
	if (copy_from_sockptr(&h, arg, sizeof(h)))
		return -EFAULT;
	err = parse_header(&h, &op);
	if (err)
		return err;
	if (op.op != NFKV_OP_PUT || len != sizeof(h) + op.key_len + (size_t)op.value_len)
		return -EINVAL;
	op.new = entry_alloc(op.key_len, op.value_len);
	if (!op.new)
		return -ENOMEM;
	if (copy_from_sockptr_offset(op.new->data, arg, sizeof(h), op.key_len + op.value_len)) {
		kvfree(op.new);	/* never linked: no reference but ours */
		return -EFAULT;
	}
	op.key = op.new->data;
	return write_one(t, &op);
}

static int cref_set(struct sock *sk, int optval, sockptr_t arg, unsigned int len)
{
	struct cref_table *t = table_of(sk);
	unsigned int cmd = optval - optbase;
	u8 stack[ON_STACK_MAX], *buf = stack;
	struct cref_op op = {};
	int err;

	if (!ns_capable(sock_net(sk)->user_ns, CAP_NET_ADMIN)) {
		err = -EPERM;
		goto out;
	}
	if (cmd >= NFKV_SET_COMMANDS) {
		err = -EOPNOTSUPP;
		goto out;
	}
	if (len > NFKV_MAX_REQUEST_LEN) {
		err = -E2BIG;
		goto out;
	}
	switch (cmd) {
	case NFKV_SO_SET_PUT - NFKV_BASE_CTL:
		if (len < sizeof(struct nfkv_op)) {
			err = -EINVAL;
			break;
		}
		if (len <= ON_STACK_MAX && copy_from_sockptr(stack, arg, len)) {
			err = -EFAULT;
			break;
		}
		err = do_put(t, stack, arg, len);
		break;
	case NFKV_SO_SET_DEL - NFKV_BASE_CTL: {
		const u8 *p = stack;
		size_t left = len;

		/* A header and a key: never over ON_STACK_MAX bytes. */
		if (len < sizeof(struct nfkv_op) || len > ON_STACK_MAX) {
			err = -EINVAL;
			break;
		}
		if (copy_from_sockptr(stack, arg, len)) {
			err = -EFAULT;
			break;
		}
		err = parse_op(&p, &left, &op, false);
		if (!err && (left || op.op != NFKV_OP_DEL))
			err = -EINVAL;
		if (!err)
			err = write_one(t, &op);
		break;
	}
	case NFKV_SO_SET_FLUSH - NFKV_BASE_CTL:
		if (len != sizeof(struct nfkv_flush)) {
			err = -EINVAL;
			break;
		}
		if (copy_from_sockptr(stack, arg, len)) {
			err = -EFAULT;
			break;
		}
		err = memchr_inv(stack, 0, len) ? -EINVAL : write_ops(t, true, NULL, 0);
		break;
	default: { /* NFKV_SO_SET_BATCH */
		struct nfkv_batch h;

		if (len < sizeof(h)) {
			err = -EINVAL;
			break;
		}
		/* Above ON_STACK_MAX, the header is checked before anything past it is copied. */
		if (len <= ON_STACK_MAX)
			err = copy_from_sockptr(stack, arg, len) ? -EFAULT : 0;
		else
			err = copy_from_sockptr(&h, arg, sizeof(h)) ? -EFAULT : 0;
		if (err)
			break;
		if (len <= ON_STACK_MAX)
			memcpy(&h, stack, sizeof(h));
		err = check_batch(&h, len);
		if (err)
			break;
		if (len > ON_STACK_MAX) {
			buf = kvmalloc(len, NFKV_GFP);
			if (!buf) {
				err = -ENOMEM;
				break;
			}
			memcpy(buf, &h, sizeof(h));
			if (copy_from_sockptr_offset(buf + sizeof(h), arg, sizeof(h), len - sizeof(h)))
				err = -EFAULT;
		}
		if (!err)
			err = do_batch(t, buf, len);
		if (buf != stack)
			kvfree(buf);
		break;
	}
	}
out:
	count_call(t, cmd, NFKV_SET_COMMANDS, cmd, err);
	return err;
}

/*
 * Copies GET's reply for `e` to `user`: its length, -EMSGSIZE (the header
 * alone), or -EFAULT (with `nofault`: a page is absent, or bad address).
 */
static int put_value(const struct cref_entry *e, void __user *user, int len, u64 now,
		     bool nofault)
{
	struct nfkv_value reply = {
		.version = e->version,
		.value_len = entry_value_len(e),
		.ttl_ms = entry_ttl_ms(e, now),
	};
	const u8 *value = e->data + entry_key_len(e);

	if (nofault ? copy_to_user_nofault(user, &reply, sizeof(reply)) :
		      copy_to_user(user, &reply, sizeof(reply)))
		return -EFAULT;
	if (sizeof(reply) + reply.value_len > len)
		return -EMSGSIZE;
	if (nofault ? copy_to_user_nofault(user + sizeof(reply), value, reply.value_len) :
		      copy_to_user(user + sizeof(reply), value, reply.value_len))
		return -EFAULT;
	return sizeof(reply) + reply.value_len;
}

static int get_value(struct cref_table *t, void __user *user, int len)
{
	u8 req[sizeof(struct nfkv_get) + NFKV_MAX_KEY_LEN];
	struct nfkv_get h;
	struct cref_entry *e;
	size_t n = min_t(size_t, len, sizeof(req));
	u64 now;
	int ret;

	if (len < (int)sizeof(struct nfkv_value))
		return -EINVAL;
	if (copy_from_user(req, user, n))
		return -EFAULT;
	memcpy(&h, req, sizeof(h));
	if (h.reserved || h.reserved2 || !h.key_len || h.key_len > NFKV_MAX_KEY_LEN ||
	    n < sizeof(h) + h.key_len)
		return -EINVAL;
	for (;;) {
		rcu_read_lock();
		e = find_rcu(t, req + sizeof(h), h.key_len);
		/* The clock is read only for an entry that expires at all. */
		now = e && e->expires ? get_jiffies_64() : 0;
		if (!e || entry_expired(e, now)) {
			rcu_read_unlock();
			return -ENOENT;
		}
		ret = put_value(e, user, len, now, true);
		if (ret != -EFAULT) {
			rcu_read_unlock();
			return ret;
		}
		/* A page must be faulted in: copy under a reference, out of RCU. */
		if (refcount_inc_not_zero(&e->ref))
			break;
		rcu_read_unlock();	/* freed since found: search again */
	}
	rcu_read_unlock();
	/* A linked entry never changes: read it unlocked, under our reference. */
	ret = put_value(e, user, len, now, false);
	entry_put(e);
	return ret;
}

/*
 * Fills `page` (`room` bytes, zeroed) with the entries `h` asks for, under
 * the lock. Returns the bytes used, or -EMSGSIZE with *needed the page size
 * the first entry needs.
 */
static int fill_list(struct cref_table *t, const struct nfkv_list *h, const u8 *after,
		     const u8 *prefix, u8 *page, size_t room, size_t *needed)
{
	struct nfkv_list_reply reply = {};
	size_t used = sizeof(reply);
	struct cref_entry *e;
	int err = 0;
	u64 now;

	mutex_lock(&t->lock);
	now = get_jiffies_64();
	if (h->after_len && keycmp(after, h->after_len, prefix, h->prefix_len) >= 0)
		e = lower_bound(t, after, h->after_len);
	else
		e = lower_bound(t, prefix, h->prefix_len);
	for (; e; e = rb_entry_safe(rb_next(&e->node[WRITERS]), struct cref_entry, node[WRITERS])) {
		struct nfkv_list_entry le = {};
		unsigned int klen = entry_key_len(e), vlen = entry_value_len(e);
		size_t size = NFKV_ALIGN_UP(sizeof(le) + klen + vlen);

		if (h->after_len && !keycmp(e->data, klen, after, h->after_len))
			continue;
		if (klen < h->prefix_len || keycmp(e->data, h->prefix_len, prefix, h->prefix_len))
			break;
		if (entry_expired(e, now))
			continue;
		if (room - used < size) {
			reply.flags = NFKV_LIST_F_MORE;
			if (!reply.count) {
				*needed = sizeof(reply) + size;
				err = -EMSGSIZE;
			}
			break;
		}
		le.version = e->version;
		le.key_len = klen;
		le.value_len = vlen;
		le.ttl_ms = entry_ttl_ms(e, now);
		memcpy(page + used, &le, sizeof(le));
		memcpy(page + used + sizeof(le), e->data, klen + vlen);
		used += size;
		reply.count++;
	}
	reply.generation = t->generation;
	mutex_unlock(&t->lock);
	reply.size = err ? *needed : used;
	memcpy(page, &reply, sizeof(reply));
	return err ? err : used;
}

/*
 * Lists into a page sized by what the table can put in it, every entry
 * padded (a frame of its own: the page's stack buffer is not also the
 * request's).
 */
static noinline int list_page(struct cref_table *t, const struct nfkv_list *h,
			      const u8 *after, const u8 *prefix, void __user *user, int len)
{
	size_t limit = min_t(size_t, len, LIST_PAGE_MAX), size, needed = 0;
	u8 stack[ON_STACK_MAX];
	u64 bound;
	int used;

	mutex_lock(&t->lock);
	bound = (u64)t->entries * (sizeof(struct nfkv_list_entry) + NFKV_ALIGN - 1) + t->bytes +
		sizeof(struct nfkv_list_reply);
	mutex_unlock(&t->lock);
	size = min_t(u64, bound, limit);
	for (;;) {
		u8 *page = stack;

		if (size > ON_STACK_MAX) {
			page = kvzalloc(size, NFKV_GFP);
			if (!page)
				return -ENOMEM;
		} else {
			memset(stack, 0, size);
		}
		used = fill_list(t, h, after, prefix, page, size, &needed);
		/* The table grew since it was sized, and its first entry does not fit. */
		if (used == -EMSGSIZE && needed <= limit && size < needed) {
			if (page != stack)
				kvfree(page);
			size = needed;
			continue;
		}
		if (copy_to_user(user, page, used < 0 ? sizeof(struct nfkv_list_reply) : used))
			used = -EFAULT;
		if (page != stack)
			kvfree(page);
		return used;
	}
}

static int get_list(struct cref_table *t, void __user *user, int len)
{
	u8 req[sizeof(struct nfkv_list) + 2 * NFKV_MAX_KEY_LEN];
	size_t n = min_t(size_t, len, sizeof(req));
	struct nfkv_list h;
	const u8 *after;

	if (len < (int)sizeof(struct nfkv_list_reply))
		return -EINVAL;
	if (copy_from_user(req, user, n))
		return -EFAULT;
	memcpy(&h, req, sizeof(h));
	if (h.flags || h.after_len > NFKV_MAX_KEY_LEN || h.prefix_len > NFKV_MAX_KEY_LEN ||
	    n < sizeof(h) + h.after_len + h.prefix_len)
		return -EINVAL;
	after = req + sizeof(h);
	return list_page(t, &h, after, after + h.after_len, user, len);
}

/*
 * Gives `t` its change log if it has none yet (the namespace's first
 * watch): every change from then on is logged. Allocated before locking.
 */
static int ensure_log(struct cref_table *t)
{
	u32 size = max_t(u32, watch_log_kib << 10, LOG_MIN_BYTES) & ~(NFKV_ALIGN - 1);
	u32 slots = size / sizeof(struct nfkv_event);
	u32 *offsets;
	u8 *data;

	/* Set once, under the lock, after the rest of the log. */
	if (smp_load_acquire(&t->log.data))
		return 0;
	data = kvmalloc(size, NFKV_GFP);
	offsets = kvmalloc_array(slots, sizeof(*offsets), NFKV_GFP);
	if (!data || !offsets) {
		kvfree(data);
		kvfree(offsets);
		return -ENOMEM;
	}
	mutex_lock(&t->lock);
	if (!t->log.data) {
		t->log.offsets = offsets;
		t->log.size = size;
		t->log.slots = slots;
		t->log.start = t->generation;
		smp_store_release(&t->log.data, data);
		data = NULL;
		offsets = NULL;
	}
	mutex_unlock(&t->lock);
	/* Another watcher's log won meanwhile: ours goes. */
	kvfree(data);
	kvfree(offsets);
	return 0;
}

/* What watch_page() did. */
struct watch_scan {
	u64 covered;	/* every event up to it is in the page or filtered out */
	bool more;	/* events after `covered` are logged already */
	size_t needed;	/* the page size the first event needs, if it did not fit */
	u32 count;
	size_t used;	/* bytes of the page, header included */
};

/*
 * Fills `page` (`room` bytes) after its header with the logged events
 * after `from` that `h` asks for (keys starting with `prefix`, flushes
 * always), in generation order, looking at WATCH_SCAN_MAX at most; a put's
 * value is attached with NFKV_WATCH_F_VALUES if its entry still has that
 * version and is live at `now`. Under the lock; `from` >= log.start.
 */
static void watch_page(struct cref_table *t, const struct nfkv_watch *h, const u8 *prefix,
		       u64 from, u8 *page, size_t room, struct watch_scan *s)
{
	const struct cref_log *l = &t->log;
	u64 end = min(t->generation, from + WATCH_SCAN_MAX), now = get_jiffies_64();
	u8 key[NFKV_MAX_KEY_LEN];

	s->covered = from;
	s->more = false;
	s->needed = 0;
	s->count = 0;
	s->used = sizeof(struct nfkv_watch_reply);
	while (s->covered < end) {
		u64 g = s->covered + 1, index = g - l->start - 1;
		const struct cref_entry *e = NULL;
		struct nfkv_event ev;
		u32 slot, at, vlen = 0;
		size_t size;

		if (g <= l->start || index >= l->count)
			break;
		slot = l->first + index;
		at = l->offsets[slot >= l->slots ? slot - l->slots : slot];
		ring_read(l, at, &ev, sizeof(ev));
		ring_read(l, ring_add(at, sizeof(ev), l->size), key, ev.key_len);
		if (ev.type != NFKV_EVENT_FLUSH &&
		    (ev.key_len < h->prefix_len || memcmp(key, prefix, h->prefix_len))) {
			s->covered = g;
			continue;
		}
		if ((h->flags & NFKV_WATCH_F_VALUES) && ev.type == NFKV_EVENT_PUT) {
			e = find(t, key, ev.key_len);
			if (e && (e->version != g || entry_expired(e, now)))
				e = NULL;
		}
		if (e) {
			vlen = entry_value_len(e);
			ev.flags = NFKV_EVENT_F_VALUE;
			ev.value_len = vlen;
		}
		size = NFKV_ALIGN_UP(sizeof(ev) + ev.key_len + vlen);
		if (room - s->used < size) {
			if (!s->count)
				s->needed = sizeof(struct nfkv_watch_reply) + size;
			s->more = true;
			return;
		}
		memset(page + s->used + size - NFKV_ALIGN, 0, NFKV_ALIGN);
		memcpy(page + s->used, &ev, sizeof(ev));
		memcpy(page + s->used + sizeof(ev), key, ev.key_len);
		if (e)
			memcpy(page + s->used + sizeof(ev) + ev.key_len,
			       e->data + entry_key_len(e), vlen);
		s->used += size;
		s->count++;
		s->covered = g;
	}
	s->more = s->covered < t->generation;
}

/*
 * Answers watch `h` into `page` (`room` bytes): the events after h->since,
 * waiting for one at most h->timeout_ms if there are none yet (on the wait
 * queue, the lock dropped), or a gap answer if the log no longer holds
 * them all. Returns the reply's bytes; -EMSGSIZE with the header telling
 * the size needed (*needed) if the first event does not fit; -ERESTARTSYS
 * on a signal.
 */
static int watch_locked(struct cref_table *t, const struct nfkv_watch *h, const u8 *prefix,
			u8 *page, size_t room, size_t *needed)
{
	long wait = DIV_ROUND_UP_ULL((u64)h->timeout_ms * HZ, MSEC_PER_SEC);
	struct nfkv_watch_reply reply = {};
	struct watch_scan s;
	u64 from = h->since;
	int ret;

	mutex_lock(&t->lock);
	if (from > t->generation) {
		mutex_unlock(&t->lock);
		return -EINVAL;
	}
	for (;;) {
		DEFINE_WAIT(w);

		reply.generation = t->generation;
		reply.oldest = t->log.start;
		if (from < t->log.start) {
			reply.flags = NFKV_WATCH_F_GAP;
			reply.size = sizeof(reply);
			ret = sizeof(reply);
			break;
		}
		watch_page(t, h, prefix, from, page, room, &s);
		if (s.needed) {
			reply.generation = s.covered;
			reply.flags = NFKV_WATCH_F_MORE;
			reply.size = s.needed;
			*needed = s.needed;
			ret = -EMSGSIZE;
			break;
		}
		if (s.count || s.more || !wait) {
			reply.generation = s.covered;
			reply.flags = s.more ? NFKV_WATCH_F_MORE : 0;
			reply.count = s.count;
			reply.size = s.used;
			ret = s.used;
			break;
		}
		from = s.covered;
		t->watchers++;
		prepare_to_wait_exclusive(&t->changed, &w, TASK_INTERRUPTIBLE);
		mutex_unlock(&t->lock);
		wait = schedule_timeout(wait);
		mutex_lock(&t->lock);
		finish_wait(&t->changed, &w);
		t->watchers--;
		if (signal_pending(current)) {
			mutex_unlock(&t->lock);
			return -ERESTARTSYS;
		}
	}
	mutex_unlock(&t->lock);
	memcpy(page, &reply, sizeof(reply));
	return ret;
}

static noinline int get_watch(struct cref_table *t, void __user *user, int len)
{
	u8 req[sizeof(struct nfkv_watch) + NFKV_MAX_KEY_LEN];
	size_t n, limit, size, needed = 0;
	struct nfkv_watch h;
	int ret;

	if (len < (int)max(sizeof(struct nfkv_watch_reply), sizeof(struct nfkv_watch)))
		return -EINVAL;
	n = min_t(size_t, len, sizeof(req));
	if (copy_from_user(req, user, n))
		return -EFAULT;
	memcpy(&h, req, sizeof(h));
	if ((h.flags & ~NFKV_WATCH_F_VALUES) || h.prefix_len > NFKV_MAX_KEY_LEN ||
	    h.timeout_ms > NFKV_WATCH_MAX_TIMEOUT_MS || n < sizeof(h) + h.prefix_len)
		return -EINVAL;
	ret = ensure_log(t);
	if (ret)
		return ret;
	limit = min_t(size_t, len, WATCH_PAGE_MAX);
	size = min_t(size_t, limit, WATCH_PAGE);
	for (;;) {
		/* Every byte of the reply is written: not zeroed. */
		u8 *page = kvmalloc(size, NFKV_GFP);

		if (!page)
			return -ENOMEM;
		ret = watch_locked(t, &h, req + sizeof(h), page, size, &needed);
		/* The first event fits the caller's buffer, not this page. */
		if (ret == -EMSGSIZE && needed <= limit && size < needed) {
			kvfree(page);
			size = needed;
			continue;
		}
		if (ret >= 0 || ret == -EMSGSIZE) {
			size_t out = ret >= 0 ? ret : sizeof(struct nfkv_watch_reply);

			if (copy_to_user(user, page, out))
				ret = -EFAULT;
		}
		kvfree(page);
		return ret;
	}
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
	case NFKV_SO_GET_WATCH - NFKV_BASE_CTL:
		return get_watch(t, user, len);
	case NFKV_SO_GET_STATS - NFKV_BASE_CTL: {
		struct nfkv_stats s = {};
		int i, cpu;

		if (len < (int)sizeof(s))
			return -EINVAL;
		for_each_possible_cpu(cpu) {
			const struct cref_stats *c = per_cpu_ptr(t->stats, cpu);

			for (i = 0; i < NFKV_SET_COMMANDS; i++) {
				s.set[i].ok += READ_ONCE(c->ok[i]);
				s.set[i].failed += READ_ONCE(c->failed[i]);
			}
			for (i = 0; i < NFKV_GET_COMMANDS; i++) {
				s.get[i].ok += READ_ONCE(c->ok[NFKV_SET_COMMANDS + i]);
				s.get[i].failed += READ_ONCE(c->failed[NFKV_SET_COMMANDS + i]);
			}
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
	count_call(t, NFKV_SET_COMMANDS + cmd, NFKV_GET_COMMANDS, cmd, ret < 0 ? ret : 0);
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
	t->stats = alloc_percpu_gfp(struct cref_stats, GFP_KERNEL_ACCOUNT);
	if (!t->stats) {
		kfree(t);
		return -ENOMEM;
	}
	mutex_init(&t->lock);
	init_waitqueue_head(&t->changed);
	INIT_DELAYED_WORK(&t->reaper, reap);
	t->root[WRITERS] = RB_ROOT;
	t->root[COPY] = RB_ROOT;
	seqcount_latch_init(&t->seq);
	*(struct cref_table **)net_generic(net, cref_net_id) = t;
	return 0;
}

static void __net_exit cref_net_exit(struct net *net)
{
	struct cref_table *t = *(struct cref_table **)net_generic(net, cref_net_id);

	/* No socket is left to write, so no write re-arms it. */
	cancel_delayed_work_sync(&t->reaper);
	/* Tree 1 holds the same entries, and no reference of its own. */
	free_tree(&t->root[WRITERS]);
	kvfree(t->log.data);
	kvfree(t->log.offsets);
	mutex_destroy(&t->lock);
	free_percpu(t->stats);
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

	if (max_value_len > NFKV_VALUE_LEN_CAP || !max_entries || optbase > INT_MAX - NFKV_SO_RANGE ||
	    watch_log_kib < 4 || watch_log_kib > 65536)
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
