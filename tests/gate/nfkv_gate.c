// SPDX-License-Identifier: GPL-2.0
/*
 * nfkv_gate: makes the kernel report one kind of bug when loaded, so that
 * tests/run-all can show the dmesg gate (tests/vm/run) catches each kind
 * and that the debug kernel's checkers are armed. Test-only:
 * tests/gate/make-reports loads it once per fault, in one boot.
 *
 *   fault=kasan   a read one byte past a kmalloc'd object (KASAN)
 *   fault=lockdep two mutexes taken in both orders (lockdep: circular locking)
 *   fault=leak    a kmalloc'd object nobody points to (kmemleak, once 5 s old)
 *   fault=rcu     an RCU read-side section of stall_secs seconds (RCU stall
 *                 report, with rcupdate.rcu_cpu_stall_timeout below that)
 *   fault=hung    stall_secs seconds asleep in TASK_UNINTERRUPTIBLE (hung task
 *                 report, with kernel.hung_task_timeout_secs below half that)
 *   fault=softlockup stall_secs seconds busy with preemption off (soft lockup
 *                 report, with kernel.watchdog_thresh below half that)
 *
 * Loading fails with -EINVAL for any other fault, so a typo is not a pass.
 */
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/string.h>

static char *fault = "";
module_param(fault, charp, 0444);
MODULE_PARM_DESC(fault, "kasan, lockdep, leak, rcu, hung or softlockup");
static unsigned int stall_secs = 10;
module_param(stall_secs, uint, 0444);
MODULE_PARM_DESC(stall_secs, "length of the rcu, hung and softlockup faults");

static DEFINE_MUTEX(gate_a);
static DEFINE_MUTEX(gate_b);

static int gate_kasan(void)
{
	size_t size = 16;
	char *p;
	char c;

	/* Hidden from the compiler, which would see the overflow. */
	OPTIMIZER_HIDE_VAR(size);
	p = kmalloc(size, GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	c = READ_ONCE(p[size]);
	kfree(p);
	pr_info("nfkv_gate: read %d past the object\n", c);
	return 0;
}

static int gate_lockdep(void)
{
	mutex_lock(&gate_a);
	mutex_lock(&gate_b);
	mutex_unlock(&gate_b);
	mutex_unlock(&gate_a);
	/* The inverse order: a deadlock waiting for a second thread. */
	mutex_lock(&gate_b);
	mutex_lock(&gate_a);
	mutex_unlock(&gate_a);
	mutex_unlock(&gate_b);
	return 0;
}

static int gate_leak(void)
{
	void *p = kmalloc(64, GFP_KERNEL);

	if (!p)
		return -ENOMEM;
	memset(p, 0x6b, 64);
	pr_info("nfkv_gate: leaked 64 bytes\n");
	return 0;
}

static struct rcu_head gate_rcu_head;

static void gate_rcu_done(struct rcu_head *head)
{
	pr_info("nfkv_gate: the stalled grace period ended\n");
}

static int gate_rcu(void)
{
	unsigned long end = jiffies + stall_secs * HZ;

	rcu_read_lock();
	/* A grace period that waits for this reader, even on an idle guest. */
	call_rcu(&gate_rcu_head, gate_rcu_done);
	while (time_before(jiffies, end))
		cpu_relax();
	rcu_read_unlock();
	return 0;
}

/* insmod itself sleeps uninterruptibly, as a task waiting on a lost wakeup. */
static int gate_hung(void)
{
	msleep(stall_secs * 1000);
	return 0;
}

/* A CPU the scheduler cannot get back, as a kernel loop that never yields. */
static int gate_softlockup(void)
{
	unsigned long end = jiffies + stall_secs * HZ;

	preempt_disable();
	while (time_before(jiffies, end))
		cpu_relax();
	preempt_enable();
	return 0;
}

static int __init gate_init(void)
{
	if (!strcmp(fault, "kasan"))
		return gate_kasan();
	if (!strcmp(fault, "lockdep"))
		return gate_lockdep();
	if (!strcmp(fault, "leak"))
		return gate_leak();
	if (!strcmp(fault, "rcu"))
		return gate_rcu();
	if (!strcmp(fault, "hung"))
		return gate_hung();
	if (!strcmp(fault, "softlockup"))
		return gate_softlockup();
	pr_err("nfkv_gate: unknown fault '%s'\n", fault);
	return -EINVAL;
}

static void __exit gate_exit(void)
{
	rcu_barrier();
}

module_init(gate_init);
module_exit(gate_exit);
MODULE_DESCRIPTION("nfkv's dmesg gate self-test faults (test-only)");
MODULE_LICENSE("GPL");
