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
 */
#define NFKV_ABI_VERSION	2

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
#define NFKV_SO_SET_MAX		NFKV_SO_SET_BATCH

/* getsockopt commands: the request is read from the buffer the reply fills. */
#define NFKV_SO_GET_INFO	(NFKV_BASE_CTL + 0) /* -> struct nfkv_info */
#define NFKV_SO_GET_VALUE	(NFKV_BASE_CTL + 1) /* struct nfkv_get -> struct nfkv_value */
#define NFKV_SO_GET_LIST	(NFKV_BASE_CTL + 2) /* struct nfkv_list -> struct nfkv_list_reply */
#define NFKV_SO_GET_STATS	(NFKV_BASE_CTL + 3) /* -> struct nfkv_stats */
#define NFKV_SO_GET_MAX		NFKV_SO_GET_STATS

/* Number of set and get commands (for struct nfkv_stats). */
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
#define NFKV_F_ALL		(NFKV_F_CREATE | NFKV_F_REPLACE | NFKV_F_IF_VERSION)

/*
 * One write. NFKV_SO_SET_PUT: optlen == sizeof + key_len + value_len exactly,
 * op == NFKV_OP_PUT. NFKV_SO_SET_DEL: optlen == sizeof + key_len exactly,
 * op == NFKV_OP_DEL, value_len == 0, flags only NFKV_F_IF_VERSION.
 * NFKV_F_CREATE excludes NFKV_F_REPLACE and NFKV_F_IF_VERSION.
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
	__u32 reserved;		/* must be 0 */
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
	__u32 reserved;
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
 * Errors, for every command:
 *   EPERM       no CAP_NET_ADMIN over the socket's network namespace
 *   EOPNOTSUPP  an optname inside the range that is no command
 *   EINVAL      malformed request: bad length, reserved field or padding not
 *               zero, unknown flag or op, key length 0 or > NFKV_MAX_KEY_LEN
 *   E2BIG       value longer than max_value_len, batch over its limits, or a
 *               request over NFKV_MAX_REQUEST_LEN
 *   EFAULT      unreadable or unwritable buffer
 *   ENOENT      key absent (GET_VALUE, DEL, PUT with REPLACE or IF_VERSION)
 *   EEXIST      PUT with CREATE on a present key
 *   ESTALE      IF_VERSION and the entry has another version
 *   ENOSPC      the table would hold more than max_entries entries
 *   EFBIG       the table would hold more than max_bytes_mib of keys + values
 *   EDQUOT      over the budget shared by the namespaces of non-initial user
 *               namespaces (userns_budget_mib; docs/ABI.md)
 *   EMSGSIZE    getsockopt buffer too small for the reply (size reported)
 *   ENOMEM      out of memory; the table is unchanged
 * A module that is not loaded shows as ENOPROTOOPT.
 */

#endif /* _UAPI_LINUX_NFKV_H */
