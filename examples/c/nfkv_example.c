// SPDX-License-Identifier: GPL-2.0
/*
 * Using nfkv from C with nothing but include/nfkv.h and libc: put a few
 * entries, read one back, then list them all, page by page.
 *
 *   cc -I include -o nfkv-example examples/c/nfkv_example.c
 *   ./nfkv-example [optbase]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "nfkv.h"

static int optbase = NFKV_BASE_CTL;

/* The optname of a command, relative to wherever the module registered. */
static int optname(int cmd)
{
	return optbase + (cmd - NFKV_BASE_CTL);
}

static int put(int fd, const char *key, const char *value)
{
	size_t klen = strlen(key), vlen = strlen(value);
	size_t len = sizeof(struct nfkv_op) + klen + vlen;
	char *req = calloc(1, len);
	struct nfkv_op *op = (struct nfkv_op *)req;
	int rc;

	op->op = NFKV_OP_PUT;
	op->key_len = klen;
	op->value_len = vlen;
	memcpy(req + sizeof(*op), key, klen);
	memcpy(req + sizeof(*op) + klen, value, vlen);
	rc = setsockopt(fd, IPPROTO_IP, optname(NFKV_SO_SET_PUT), req, len);
	free(req);
	return rc;
}

/* Prints the value of key; the buffer grows if the module says it must. */
static int get(int fd, const char *key)
{
	socklen_t size = sizeof(struct nfkv_value) + 4;

	for (;;) {
		char *buf = calloc(1, size);
		struct nfkv_get *req = (struct nfkv_get *)buf;
		struct nfkv_value *reply = (struct nfkv_value *)buf;
		socklen_t len = size;

		req->key_len = strlen(key);
		memcpy(buf + sizeof(*req), key, req->key_len);
		if (getsockopt(fd, IPPROTO_IP, optname(NFKV_SO_GET_VALUE), buf, &len) == 0) {
			printf("get %s = %.*s (version %llu)\n", key, (int)reply->value_len,
			       buf + sizeof(*reply), (unsigned long long)reply->version);
			free(buf);
			return 0;
		}
		if (errno != EMSGSIZE) {
			free(buf);
			return -1;
		}
		printf("get %s: buffer of %u too small, value needs %u\n", key, size,
		       (unsigned)(sizeof(*reply) + reply->value_len));
		size = sizeof(*reply) + reply->value_len;
		free(buf);
	}
}

/* Lists every entry, resuming after the last key of each page. */
static int list(int fd, socklen_t page_size)
{
	char after[NFKV_MAX_KEY_LEN];
	unsigned after_len = 0, pages = 0, total = 0;
	unsigned long long generation = 0;
	char *buf = malloc(page_size);

	for (;;) {
		struct nfkv_list *req = (struct nfkv_list *)buf;
		struct nfkv_list_reply *reply = (struct nfkv_list_reply *)buf;
		socklen_t len = page_size;
		char *p;
		unsigned i;

		memset(buf, 0, page_size);
		req->after_len = after_len;
		memcpy(buf + sizeof(*req), after, after_len);
		if (getsockopt(fd, IPPROTO_IP, optname(NFKV_SO_GET_LIST), buf, &len) < 0) {
			free(buf);
			return -1;
		}
		if (pages++ && reply->generation != generation)
			printf("(table changed between pages)\n");
		generation = reply->generation;
		p = buf + sizeof(*reply);
		for (i = 0; i < reply->count; i++) {
			struct nfkv_list_entry *e = (struct nfkv_list_entry *)p;
			char *key = p + sizeof(*e);

			printf("list %.*s = %.*s\n", e->key_len, key, (int)e->value_len, key + e->key_len);
			memcpy(after, key, e->key_len);
			after_len = e->key_len;
			p += NFKV_ALIGN_UP(sizeof(*e) + e->key_len + e->value_len);
			total++;
		}
		if (!(reply->flags & NFKV_LIST_F_MORE))
			break;
	}
	printf("listed %u entries in %u pages, generation %llu\n", total, pages, generation);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	struct nfkv_info info;
	socklen_t len = sizeof(info);
	char key[32], value[32];
	int fd, i;

	if (argc > 1)
		optbase = atoi(argv[1]);
	fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0)
		fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || getsockopt(fd, IPPROTO_IP, optname(NFKV_SO_GET_INFO), &info, &len) < 0) {
		perror(errno == ENOPROTOOPT ? "nfkv.ko is not loaded" : "nfkv");
		return 1;
	}
	if (info.abi_version != NFKV_ABI_VERSION) {
		fprintf(stderr, "ABI %u, expected %u\n", info.abi_version, NFKV_ABI_VERSION);
		return 1;
	}
	printf("module %s, %u entries\n", info.module_version, info.entries);
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "c-example/%02d", i);
		snprintf(value, sizeof(value), "value %d, from C", i);
		if (put(fd, key, value) < 0) {
			perror("put");
			return 1;
		}
	}
	if (get(fd, "c-example/07") < 0 || list(fd, 128) < 0) {
		perror("nfkv");
		return 1;
	}
	return 0;
}
