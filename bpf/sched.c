/* agtap: process lifecycle. exec tells userspace to look for new SSL targets
 * (a node binary at a new path; with per-process probes, a runtime to watch)
 * and lets the comm filter follow process names; exit ends the connections of
 * processes that had captured ones and the probes of watched ones; fork
 * extends watching to a watched process's children.
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
    u8 *w = watch_state.lookup(&tgid);
    if (w && *w == W_DEMOTED)
        watch_state.delete(&tgid);   /* demoted: its new image is judged anew (sentinel, userspace) */
    emit_event(K_EXEC, 0, tgid, tid, 0, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if (tgid != tid)
        return 0;   /* a thread, not the process */
    comm_tgids.delete(&tgid);
    client_tgids.delete(&tgid);
    int watched = watch_state.lookup(&tgid) != 0;
    if (watched)
        watch_state.delete(&tgid);
    int active = active_tgids.lookup(&tgid) != 0;
    if (active)
        active_tgids.delete(&tgid);
    if (!watched && !active)
        return 0;   /* no captured connection and no probes of its own */
    emit_event(K_EXIT, 0, tgid, tid, 0, 0);
    return 0;
}

/* A watched process forks (or clones a thread): userspace watches the child
 * too (a child does not inherit its parent's per-process probes). The child's
 * id is the kernel's global one: with the daemon in another PID namespace the
 * child is left to its exec and the sentinel. */
TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 tgid, tid;
    if (USE_NS_PIDS)
        return 0;   /* child_pid is not in the daemon's namespace */
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if (!watch_state.lookup(&tgid))
        return 0;   /* the parent is not watched: the common case */
    emit_event(K_FORK, (u64)args->child_pid, tgid, tid, 0, 0);
    return 0;
}
