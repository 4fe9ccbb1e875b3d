/* agtap: process lifecycle. exec tells userspace to look for new SSL targets
 * (a node binary at a new path) and lets the comm filter follow process
 * names; exit ends the connections of processes that had captured ones.
 */

TRACEPOINT_PROBE(sched, sched_process_exec) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    u32 k1 = 1;
    u32 *comm_on = filter_cfg.lookup(&k1);
    if (comm_on && *comm_on) {
        /* after exec the thread is the main thread and its comm is the new
         * process name: remember the tgid for its renamed threads */
        struct comm_key_t c = {};
        bpf_get_current_comm(&c.name, sizeof(c.name));
        u8 one = 1;
        if (filter_comms.lookup(&c))
            comm_tgids.update(&tgid, &one);
        else
            comm_tgids.delete(&tgid);
    }
    emit_event(K_EXEC, 0, tgid, tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if (tgid != tid)
        return 0;   /* a thread, not the process */
    comm_tgids.delete(&tgid);
    if (!active_tgids.lookup(&tgid))
        return 0;   /* it never had a captured connection */
    active_tgids.delete(&tgid);
    emit_event(K_EXIT, 0, tgid, tid);
    return 0;
}
