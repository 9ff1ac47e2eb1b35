// SPDX-License-Identifier: GPL-2.0
/*
 * nfkv's module parameters. 6.12's Rust `module!` cannot declare them, so
 * they live here; the Rust side reads them through kernel_ext::params.
 */
#include <linux/module.h>

#include "../include/nfkv.h"

static unsigned int optbase = NFKV_BASE_CTL;
module_param(optbase, uint, 0444);
MODULE_PARM_DESC(optbase, "First optname of the registered sockopt range (default 2048; not below 64 nor in 200..255, which the IP layer keeps)");

static unsigned int max_value_len = 4096;
module_param(max_value_len, uint, 0444);
MODULE_PARM_DESC(max_value_len, "Longest value in bytes (default 4096, at most 65536)");

static unsigned int max_entries = 65536;
module_param(max_entries, uint, 0444);
MODULE_PARM_DESC(max_entries, "Most entries per network namespace (default 65536)");

static unsigned int max_bytes_mib = 1024;
module_param(max_bytes_mib, uint, 0444);
MODULE_PARM_DESC(max_bytes_mib, "Most key+value MiB per network namespace (default 1024)");

static unsigned int userns_budget_mib = 32;
module_param(userns_budget_mib, uint, 0444);
MODULE_PARM_DESC(userns_budget_mib, "Key+value MiB shared by all namespaces owned by non-initial user namespaces (default 32)");

static unsigned int watch_log_kib = 1024;
module_param(watch_log_kib, uint, 0444);
MODULE_PARM_DESC(watch_log_kib, "KiB of each network namespace's change log, made by its first watch (default 1024, 4..65536)");

MODULE_VERSION(NFKV_VERSION);
