/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * nfkv: a locked key/value table per network namespace, driven through
 * nf_sockopt (setsockopt/getsockopt at level IPPROTO_IP on any PF_INET socket).
 *
 * This header is the single source of truth for the ABI: the kernel module and
 * the Rust client are generated from it by bindgen, and C programs include it
 * as is. All integers are in host byte order. Every struct is 8-byte aligned
 * with explicit reserved fields, which must be zero in requests and are zero
 * in replies.
 *
 * Every command, set or get, requires CAP_NET_ADMIN in the user namespace that
 * owns the socket's network namespace, and acts on that namespace's table.
 */
#ifndef _UAPI_LINUX_NFKV_H
#define _UAPI_LINUX_NFKV_H

#include <linux/types.h>

/*
 * Bumped on any incompatible change; the client refuses other versions.
 * 2: struct nfkv_info grew (flags, max_bytes, charged, budget_*); EFBIG and
 *    EDQUOT name the limit that refused a write (were ENOSPC).
 * 3: entries may expire: struct nfkv_op.reserved became ttl_ms
 *    (NFKV_F_TTL, NFKV_F_KEEP_TTL), struct nfkv_value.reserved became
 *    ttl_ms, struct nfkv_list_entry grew ttl_ms.
 * 4: NFKV_SO_GET_WATCH (struct nfkv_watch, nfkv_watch_reply, nfkv_event).
 */
#define NFKV_ABI_VERSION	4

/*
 * Default first optname of the range the module registers; the module
 * parameter `optbase` moves it, and /sys/module/nfkv/parameters/optbase tells
 * clients where it is. Set and get optnames are both
 * [optbase, optbase + NFKV_SO_RANGE). In-tree PF_INET users avoided:
 * the IP_* options of do_ip_{set,get}sockopt (< 64), ip_tables (64..67),
 * SO_ORIGINAL_DST (80), ip_set (83), arp_tables (96..99), ebtables (128..131),
 * ip_mroute MRT_* (200..212) and IPVS (1152..1168). The module refuses an
 * optbase whose range overlaps 0..63 or 200..255: the IP layer answers those
 * optnames itself, so nf_sockopt would never see them.
 */
#define NFKV_BASE_CTL		2048
#define NFKV_SO_RANGE		16

/* setsockopt commands, as offsets from NFKV_BASE_CTL (or optbase). */
#define NFKV_SO_SET_PUT		(NFKV_BASE_CTL + 0) /* struct nfkv_op + key + value */
#define NFKV_SO_SET_DEL		(NFKV_BASE_CTL + 1) /* struct nfkv_op + key */
#define NFKV_SO_SET_FLUSH	(NFKV_BASE_CTL + 2) /* struct nfkv_flush */
#define NFKV_SO_SET_BATCH	(NFKV_BASE_CTL + 3) /* struct nfkv_batch + records */
#define NFKV_SO_SET_MAX		NFKV_SO_SET_BATCH /* of the table commands */
#define NFKV_SO_SET_CLS_ADD	(NFKV_BASE_CTL + 4) /* struct nfkv_classifier */
#define NFKV_SO_SET_CLS_DEL	(NFKV_BASE_CTL + 5) /* struct nfkv_classifier_del */

/* getsockopt commands: the request is read from the buffer the reply fills. */
#define NFKV_SO_GET_INFO	(NFKV_BASE_CTL + 0) /* -> struct nfkv_info */
#define NFKV_SO_GET_VALUE	(NFKV_BASE_CTL + 1) /* struct nfkv_get -> struct nfkv_value */
#define NFKV_SO_GET_LIST	(NFKV_BASE_CTL + 2) /* struct nfkv_list -> struct nfkv_list_reply */
#define NFKV_SO_GET_STATS	(NFKV_BASE_CTL + 3) /* -> struct nfkv_stats */
#define NFKV_SO_GET_MAX		NFKV_SO_GET_STATS /* of the table commands */
#define NFKV_SO_GET_CLS_LIST	(NFKV_BASE_CTL + 4) /* -> struct nfkv_classifier_list */
#define NFKV_SO_GET_WATCH	(NFKV_BASE_CTL + 5) /* struct nfkv_watch -> struct nfkv_watch_reply */

/* Number of set and get table commands (struct nfkv_stats counts those; the
 * classifier commands came later, and the struct keeps its size). */
#define NFKV_SET_COMMANDS	(NFKV_SO_SET_MAX - NFKV_BASE_CTL + 1)
#define NFKV_GET_COMMANDS	(NFKV_SO_GET_MAX - NFKV_BASE_CTL + 1)

/* Fixed limits. max_value_len and max_entries are module parameters. */
#define NFKV_MAX_KEY_LEN	255
#define NFKV_VALUE_LEN_CAP	65536		/* hard cap of max_value_len */
#define NFKV_MAX_BATCH_OPS	65536		/* records in one batch */
#define NFKV_MAX_REQUEST_LEN	(64U << 20)	/* bytes of one set request */

/* Records inside a batch and entries inside a list reply are padded with
 * zero bytes to a multiple of NFKV_ALIGN. */
#define NFKV_ALIGN		8
#define NFKV_ALIGN_UP(len)	(((len) + NFKV_ALIGN - 1) & ~(NFKV_ALIGN - 1))

/* struct nfkv_op.op */
#define NFKV_OP_PUT		1
#define NFKV_OP_DEL		2

/* struct nfkv_op.flags */
#define NFKV_F_CREATE		0x1 /* PUT: EEXIST if the key exists */
#define NFKV_F_REPLACE		0x2 /* PUT: ENOENT if the key is absent */
#define NFKV_F_IF_VERSION	0x4 /* PUT/DEL: ENOENT if absent, ESTALE unless
				     * the entry's version equals .version */
#define NFKV_F_TTL		0x8 /* PUT: the entry expires .ttl_ms after the
				     * write */
#define NFKV_F_KEEP_TTL		0x10 /* PUT: an entry that replaces a present
				      * one keeps its expiry (or its lack of
				      * one); NFKV_F_TTL then applies only
				      * where the key is absent */
#define NFKV_F_ALL		(NFKV_F_CREATE | NFKV_F_REPLACE | NFKV_F_IF_VERSION | \
				 NFKV_F_TTL | NFKV_F_KEEP_TTL)

/* Longest lifetime of an entry: 2^32 - 1 ms, about 49.7 days. */
#define NFKV_MAX_TTL_MS		0xffffffffU

/*
 * One write. NFKV_SO_SET_PUT: optlen == sizeof + key_len + value_len exactly,
 * op == NFKV_OP_PUT. NFKV_SO_SET_DEL: optlen == sizeof + key_len exactly,
 * op == NFKV_OP_DEL, value_len == 0, flags only NFKV_F_IF_VERSION.
 * NFKV_F_CREATE excludes NFKV_F_REPLACE and NFKV_F_IF_VERSION.
 *
 * Expiry: a PUT with NFKV_F_TTL gives its entry a lifetime of ttl_ms
 * (1..NFKV_MAX_TTL_MS) milliseconds, counted in jiffies from the write; a
 * PUT without it makes an entry that never expires, also where it replaces
 * one that would have (as a set without a timeout), unless NFKV_F_KEEP_TTL
 * keeps the replaced entry's expiry. An entry is absent to every command
 * and to the classifiers from the moment it expires (a write may create the
 * key anew at once); it is removed, its memory and budget given back and
 * the table's generation moved, within a second or so (the module reaps
 * expired entries from delayed work, which runs only while some entry may
 * expire). Until then it still counts in nfkv_info's entries and bytes and
 * against the limits.
 * Every successful write gives the entry a new version, and the table a new
 * generation (both from one per-table counter). A new table's counter starts
 * at the wall-clock time of its creation in ns since the Unix epoch, so a
 * namespace's versions never repeat across rmmod/insmod, flushes or restores.
 * Each namespace's table has its own counter: two namespaces may give out
 * the same version (see docs/ABI.md).
 */
struct nfkv_op {
	__u16 op;		/* NFKV_OP_PUT or NFKV_OP_DEL */
	__u16 key_len;		/* 1..NFKV_MAX_KEY_LEN, else EINVAL */
	__u32 flags;		/* NFKV_F_*; others: EINVAL */
	__u32 value_len;	/* 0..max_value_len, else E2BIG */
	__u32 ttl_ms;		/* NFKV_F_TTL: lifetime, 1..NFKV_MAX_TTL_MS; else 0 */
	__u64 version;		/* NFKV_F_IF_VERSION: expected version (>= 1); else 0 */
	/* followed by key_len bytes of key, then value_len bytes of value */
};

/* NFKV_SO_SET_FLUSH: optlen == sizeof exactly. Removes every entry. */
struct nfkv_flush {
	__u32 flags;		/* must be 0 */
	__u32 reserved;		/* must be 0 */
};

/* struct nfkv_batch.flags */
#define NFKV_BATCH_F_FLUSH	0x1 /* empty the table before the first record */

/*
 * NFKV_SO_SET_BATCH: the header, then `count` records, each a struct nfkv_op
 * followed by its key and value and zero padding to NFKV_ALIGN_UP. optlen must
 * be exactly the sum. The records are applied in order, all or nothing: the
 * first failing record's errno is returned and the table is left unchanged.
 */
struct nfkv_batch {
	__u32 flags;		/* NFKV_BATCH_F_*; others: EINVAL */
	__u32 count;		/* 0..NFKV_MAX_BATCH_OPS, else E2BIG */
};

/*
 * NFKV_SO_GET_INFO: optlen >= sizeof (else EINVAL); optlen is set to sizeof.
 */
struct nfkv_info {
	__u32 abi_version;	/* NFKV_ABI_VERSION of the module */
	__u32 optbase;		/* first optname of the registered range */
	__u32 max_key_len;
	__u32 max_value_len;	/* module parameter */
	__u32 max_entries;	/* module parameter, per network namespace */
	__u32 max_batch_ops;
	__u32 entries;		/* entries in this namespace's table */
	__u32 flags;		/* NFKV_INFO_F_* */
	__u64 bytes_used;	/* key + value bytes stored */
	__u64 generation;	/* changes with every successful write */
	char module_version[16]; /* NUL-terminated */
	__u64 max_bytes;	/* module parameter max_bytes_mib, in bytes */
	__u64 charged;		/* this table's charge to the shared budget:
				 * what its entries' allocations take (0 unless
				 * NFKV_INFO_F_BUDGET) */
	__u64 budget_used;	/* the shared budget: charged by all its tables */
	__u64 budget_size;	/* the shared budget: module parameter
				 * userns_budget_mib, in bytes */
};

/* struct nfkv_info.flags */
#define NFKV_INFO_F_BUDGET	0x1 /* this namespace is owned by a non-initial
				     * user namespace: its table is charged to
				     * the shared budget */

/*
 * NFKV_SO_GET_VALUE request, at the start of the buffer; optlen must be at
 * least sizeof(struct nfkv_get) + key_len and at least
 * sizeof(struct nfkv_value), else EINVAL. ENOENT if the key is absent.
 */
struct nfkv_get {
	__u16 key_len;		/* 1..NFKV_MAX_KEY_LEN */
	__u16 reserved;		/* must be 0 */
	__u32 reserved2;	/* must be 0 */
	/* followed by key_len bytes of key */
};

/*
 * NFKV_SO_GET_VALUE reply: on success optlen is set to sizeof + value_len.
 * When the buffer is too small for the value, the call fails with EMSGSIZE
 * after writing this header, whose value_len tells the size needed: a value
 * is never truncated.
 */
struct nfkv_value {
	__u64 version;
	__u32 value_len;
	__u32 ttl_ms;		/* time left before the entry expires, in ms:
				 * the whole jiffies after the current one (so
				 * never over the lifetime written), at least 1;
				 * 0: it never expires */
	/* followed by value_len bytes of value */
};

/*
 * NFKV_SO_GET_LIST request, at the start of the buffer: one page of entries
 * in key order (bytewise, shorter first on a common prefix), starting after
 * the key `after` (empty: from the first) and limited to keys that begin with
 * `prefix` (empty: all). optlen must be at least
 * sizeof(struct nfkv_list) + after_len + prefix_len and at least
 * sizeof(struct nfkv_list_reply), else EINVAL.
 */
struct nfkv_list {
	__u32 flags;		/* must be 0 */
	__u16 after_len;	/* 0..NFKV_MAX_KEY_LEN */
	__u16 prefix_len;	/* 0..NFKV_MAX_KEY_LEN */
	/* followed by after_len bytes of `after`, then prefix_len bytes of prefix */
};

/* struct nfkv_list_reply.flags */
#define NFKV_LIST_F_MORE	0x1 /* entries past the last one match too */

/*
 * NFKV_SO_GET_LIST reply: the header, then `count` entries, each a struct
 * nfkv_list_entry, key, value and zero padding to NFKV_ALIGN_UP. On success
 * optlen is set to `size`. A page holds as many whole entries as fit (the
 * module fills at most 1 MiB per call). If not even the first entry fits, the
 * call fails with EMSGSIZE after writing this header, whose `size` is then
 * the buffer size needed for it. Pages taken while `generation` stays the
 * same form a consistent snapshot.
 */
struct nfkv_list_reply {
	__u64 generation;
	__u32 count;
	__u32 flags;		/* NFKV_LIST_F_* */
	__u32 size;		/* bytes of the reply, header included */
	__u32 reserved;
};

struct nfkv_list_entry {
	__u64 version;
	__u16 key_len;
	__u16 reserved;
	__u32 value_len;
	__u32 ttl_ms;		/* as in struct nfkv_value */
	__u32 reserved2;
	/* followed by key, value, zero padding to NFKV_ALIGN */
};

/*
 * Watch: the table's changes, in generation order. Every change of an entry
 * moves the table's generation by exactly one, so each generation after the
 * table's first names one event: a put (its version is the generation), a
 * delete, a flush, or an expiry (the reaper removing an expired entry,
 * within a second or so of its deadline; an entry overwritten or created
 * anew before that has no expiry event: the put replaced it). The table
 * keeps its latest events in a change log of at most watch_log_kib KiB
 * (module parameter), made by the namespace's first watch (so the events
 * before it are not logged: that watch may get a gap answer) and charged
 * to the shared budget like entries (EDQUOT).
 *
 * NFKV_SO_GET_WATCH: the events after generation `since` whose keys begin
 * with `prefix` (empty: all; a flush has no key and always matches). If
 * there are none yet, the call waits for one, at most timeout_ms
 * (0: answers at once), then answers with none. A signal ends the wait
 * with EINTR (or restarts the call): nothing is lost, as nothing was
 * copied. While it waits the call holds a reference on the module
 * (delete_module fails with EWOULDBLOCK: "Module nfkv is in use") and on
 * the namespace; the wait is bounded by NFKV_WATCH_MAX_TIMEOUT_MS.
 * optlen must be at least sizeof(struct nfkv_watch) + prefix_len and at
 * least sizeof(struct nfkv_watch_reply), else EINVAL; EINVAL too if
 * `since` is past the table's generation, timeout_ms over the maximum, or
 * a flag unknown.
 */
#define NFKV_WATCH_MAX_TIMEOUT_MS	60000

/* struct nfkv_watch.flags */
#define NFKV_WATCH_F_VALUES	0x1 /* attach each put's value, if the entry
				     * still holds it (same version, not
				     * expired) */

struct nfkv_watch {
	__u64 since;		/* generation the caller has seen up to */
	__u32 timeout_ms;	/* 0..NFKV_WATCH_MAX_TIMEOUT_MS */
	__u16 prefix_len;	/* 0..NFKV_MAX_KEY_LEN */
	__u16 flags;		/* NFKV_WATCH_F_*; others: EINVAL */
	/* followed by prefix_len bytes of prefix */
};

/* struct nfkv_watch_reply.flags */
#define NFKV_WATCH_F_GAP	0x1 /* the log no longer holds every event after
				     * `since` (or never did): count is 0; read
				     * the table afresh (LIST pages of one
				     * generation G) and watch from G */
#define NFKV_WATCH_F_MORE	0x2 /* more events after `generation` are
				     * logged already: call again at once */

/*
 * NFKV_SO_GET_WATCH reply: the header, then `count` events, each a struct
 * nfkv_event, its key, its value if attached, and zero padding to
 * NFKV_ALIGN_UP; optlen is set to `size`. `generation`: every event up to it
 * after `since` is in this reply or did not match the prefix: the next
 * call's `since`. A reply holds as many whole events as fit the buffer
 * (1 MiB at most); if not even the first one fits, the call fails with
 * EMSGSIZE after writing this header, whose `size` is the buffer size
 * needed for it.
 */
struct nfkv_watch_reply {
	__u64 generation;
	__u32 count;
	__u32 flags;		/* NFKV_WATCH_F_GAP, NFKV_WATCH_F_MORE */
	__u32 size;		/* bytes of the reply, header included */
	__u32 reserved;
	__u64 oldest;		/* the oldest `since` the log answers now */
};

/* struct nfkv_event.type */
#define NFKV_EVENT_PUT		1
#define NFKV_EVENT_DEL		2
#define NFKV_EVENT_FLUSH	3 /* every entry removed; no key */
#define NFKV_EVENT_EXPIRE	4

/* struct nfkv_event.flags */
#define NFKV_EVENT_F_VALUE	0x1 /* value_len bytes of value follow the key */

struct nfkv_event {
	__u64 generation;	/* of this change; a put's entry version */
	__u64 last;		/* generation of the last change of the same
				 * write: a batch's (or a flush with puts')
				 * events share it; == generation for a
				 * single change */
	__u8 type;		/* NFKV_EVENT_* */
	__u8 flags;		/* NFKV_EVENT_F_* */
	__u16 key_len;		/* 0 for a flush */
	__u32 value_len;	/* with NFKV_EVENT_F_VALUE; else 0 */
	/* followed by key, value, zero padding to NFKV_ALIGN */
};

/* One command's outcomes since the namespace's table was created. */
struct nfkv_counter {
	__u64 ok;
	__u64 failed;
};

/*
 * NFKV_SO_GET_STATS: optlen >= sizeof (else EINVAL); optlen is set to sizeof.
 * Indexed by command offset: set[NFKV_SO_SET_PUT - NFKV_BASE_CTL] and so on.
 * Calls refused for lack of CAP_NET_ADMIN are counted as failed too.
 */
struct nfkv_stats {
	struct nfkv_counter set[NFKV_SET_COMMANDS];
	struct nfkv_counter get[NFKV_GET_COMMANDS];
};

/*
 * Classifiers: the table in the packet path. A classifier is attached to a
 * netfilter hook of its namespace for IPv4, IPv6 or both; for each packet it
 * builds a key, its prefix followed by what it matches in the packet, looks
 * the key up in the namespace's table and applies the entry's value as a
 * struct nfkv_action. A namespace with no classifier has no hook registered.
 *
 * Key layout after the prefix (addresses and port in network byte order):
 *   NFKV_MATCH_SADDR, NFKV_MATCH_DADDR: the address, 4 bytes (IPv4) or 16
 *     bytes (IPv6), cut to the classifier's ipv4_bits or ipv6_bits if set
 *     (bits past them zero: the entry for 10.1.2.0 of a classifier with
 *     ipv4_bits 24 matches all of 10.1.2.0/24);
 *   NFKV_MATCH_PROTO_DPORT: the transport protocol number (1 byte) and the
 *     destination port (2 bytes), for TCP, UDP, UDP-Lite, SCTP and DCCP;
 *     other packets, and fragments but the first, have no key (counted as
 *     `unkeyed`) and pass.
 * A packet with no entry under its key passes this classifier.
 *
 * Order: at each hook, the namespace's classifiers for the packet's family
 * run by ascending `priority`, then by name. NFKV_ACTION_DROP drops the
 * packet and NFKV_ACTION_ACCEPT accepts it, ending the walk for this hook
 * (later netfilter hooks still run, as for an nft base chain's accept);
 * NFKV_ACTION_MARK sets skb->mark and goes on to the next classifier. All
 * classifiers of a hook run from one netfilter hook at priority
 * NFKV_HOOK_PRIORITY. At the output hook a changed mark reroutes the packet
 * (as iptables' mangle table does), so `ip rule fwmark` applies to it.
 *
 * Any write of an entry under a classifier's prefix must carry a valid
 * struct nfkv_action as its value, else it fails with EBADMSG (a batch as a
 * whole); adding a classifier whose prefix already holds such an entry
 * fails the same way. Entries are written, read and deleted with the table
 * commands; a batch changes what packets see all at once.
 */
#define NFKV_CLS_NAME_LEN	16	/* name: 1..15 bytes of [A-Za-z0-9_.-], NUL-padded */
#define NFKV_CLS_PREFIX_MAX	64	/* longest key prefix of a classifier */
#define NFKV_MAX_CLASSIFIERS	16	/* per network namespace */
#define NFKV_HOOK_PRIORITY	(-150)	/* of the netfilter hooks (mangle's) */

/* struct nfkv_classifier.family: the NFPROTO_* values of <linux/netfilter.h> */
#define NFKV_FAMILY_INET	1	/* IPv4 and IPv6 */
#define NFKV_FAMILY_IPV4	2
#define NFKV_FAMILY_IPV6	10

/* struct nfkv_classifier.hook: the NF_INET_* values of <linux/netfilter.h> */
#define NFKV_HOOK_PREROUTING	0
#define NFKV_HOOK_INPUT		1
#define NFKV_HOOK_FORWARD	2
#define NFKV_HOOK_OUTPUT	3
#define NFKV_HOOK_POSTROUTING	4

/* struct nfkv_classifier.match */
#define NFKV_MATCH_SADDR	1
#define NFKV_MATCH_DADDR	2
#define NFKV_MATCH_PROTO_DPORT	3

/*
 * NFKV_SO_SET_CLS_ADD: optlen == sizeof exactly. EEXIST if the namespace has
 * a classifier of that name, ENOSPC if it has NFKV_MAX_CLASSIFIERS (or the
 * kernel's most hooks at that family and hook: 1024), EDQUOT if its charge
 * is over the shared budget (as for entries), EBADMSG
 * if an entry under the prefix is no valid action; EINVAL for a bad name,
 * family, hook, match or prefix_len, or a non-zero reserved byte or prefix
 * byte past prefix_len.
 */
struct nfkv_classifier {
	char name[NFKV_CLS_NAME_LEN];
	__u8 family;		/* NFKV_FAMILY_* */
	__u8 hook;		/* NFKV_HOOK_* */
	__u8 match;		/* NFKV_MATCH_* */
	__u8 prefix_len;	/* 1..NFKV_CLS_PREFIX_MAX */
	__s32 priority;		/* lower runs first; ties by name */
	__u32 flags;		/* must be 0 */
	__u8 ipv4_bits;		/* ADDR matches: an IPv4 address is keyed by */
	__u8 ipv6_bits;		/* its first ipv4_bits (IPv6: ipv6_bits) bits, the
				 * rest zeroed (a subnet); 0 = the whole address;
				 * at most 32 and 128, else EINVAL; 0 for PROTO_DPORT */
	__u16 reserved;		/* must be 0 */
	__u8 prefix[NFKV_CLS_PREFIX_MAX]; /* prefix_len bytes, then zeros */
};

/* NFKV_SO_SET_CLS_DEL: optlen == sizeof exactly; ENOENT if no such name. */
struct nfkv_classifier_del {
	char name[NFKV_CLS_NAME_LEN];
	__u32 flags;		/* must be 0 */
	__u32 reserved;		/* must be 0 */
};

/*
 * NFKV_SO_GET_CLS_LIST: optlen >= sizeof(struct nfkv_classifier_list), else
 * EINVAL. The reply is the header and `count` entries, in the order packets
 * see them (family and hook are fields of each); optlen is set to its size.
 * If they do not fit, the call fails with EMSGSIZE after writing the header,
 * whose `count` tells how many there are.
 */
struct nfkv_classifier_list {
	__u32 count;
	__u32 reserved;
	/* followed by count struct nfkv_classifier_info */
};

/* Per-classifier counters, since it was added. */
struct nfkv_classifier_info {
	struct nfkv_classifier classifier;
	__u64 packets;		/* packets it saw */
	__u64 unkeyed;		/* of those, packets without a key */
	__u64 drop;		/* hits on an entry whose action is DROP */
	__u64 accept;		/* ... ACCEPT */
	__u64 mark;		/* ... MARK */
};

/* struct nfkv_action.action */
#define NFKV_ACTION_DROP	1
#define NFKV_ACTION_ACCEPT	2
#define NFKV_ACTION_MARK	3	/* skb->mark = (skb->mark & ~mask) ^ mark */

/*
 * The value of an entry under a classifier's prefix: exactly this struct.
 * DROP and ACCEPT: mark and mask 0. MARK: mask not 0, mark & ~mask == 0
 * (a whole mark is mask 0xffffffff, as `nft meta mark set`).
 */
struct nfkv_action {
	__u32 action;		/* NFKV_ACTION_* */
	__u32 mark;
	__u32 mask;
	__u32 reserved;		/* must be 0 */
};

/*
 * Errors, for every command:
 *   EPERM       no CAP_NET_ADMIN over the socket's network namespace
 *   EOPNOTSUPP  an optname inside the range that is no command
 *   EINVAL      malformed request: bad length, reserved field or padding not
 *               zero, unknown flag or op, key length 0 or > NFKV_MAX_KEY_LEN,
 *               ttl_ms 0 with NFKV_F_TTL or not 0 without it; WATCH: since
 *               past the generation, timeout_ms over its maximum
 *   E2BIG       value longer than max_value_len, batch over its limits, or a
 *               request over NFKV_MAX_REQUEST_LEN
 *   EFAULT      unreadable or unwritable buffer
 *   ENOENT      key absent or expired (GET_VALUE, DEL, PUT with REPLACE or
 *               IF_VERSION);
 *               no classifier of that name (CLS_DEL)
 *   EEXIST      PUT with CREATE on a present key; a classifier of that name
 *               (CLS_ADD)
 *   ESTALE      IF_VERSION and the entry has another version
 *   ENOSPC      the table would hold more than max_entries entries, or
 *               the namespace more than NFKV_MAX_CLASSIFIERS classifiers
 *   EFBIG       the table would hold more than max_bytes_mib of keys + values
 *   EDQUOT      over the budget shared by the namespaces of non-initial user
 *               namespaces (userns_budget_mib; docs/ABI.md), for entries,
 *               classifiers and the change log (WATCH)
 *   EINTR       a signal ended a WATCH's wait (or the call restarted)
 *   EMSGSIZE    getsockopt buffer too small for the reply (size reported)
 *   EBADMSG     a value under a classifier's prefix that is no valid
 *               struct nfkv_action (PUT, BATCH, CLS_ADD)
 *   ENOMEM      out of memory; the table is unchanged
 * A module that is not loaded shows as ENOPROTOOPT.
 */

#endif /* _UAPI_LINUX_NFKV_H */
