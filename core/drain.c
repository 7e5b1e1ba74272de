/* drain.c - waiting for the lanes to empty before a graceful stop (drain.h).
 *
 * The test runs in a check handle, after the loop's own flush (gateway.c starts its check
 * handle first, and libuv runs check handles in start order): a message published in this
 * iteration is in a transport by then, not in a lane, so a steady producer cannot keep the
 * lanes looking busy. A 20 ms repeating timer only makes the loop iterate while nothing
 * else happens. */
#include "drain.h"
#include "spill.h"

/* Nothing left to deliver: no lane holds a pending, in-flight or spilled message. */
static bool lanes_empty(sl_gateway *gw) {
  for (size_t i = 0; i < gw->nservers; i++)
    for (size_t j = 0; j < gw->servers[i].nns; j++) {
      sl_ns *ns = &gw->servers[i].ns[j];
      for (size_t t = 0; t < ns->ntopics; t++)
        for (uint32_t s = 0; s < ns->topics[t].nsubs; s++) {
          const sl_lane *l = ns->topics[t].subs[s];
          if (l->qn || l->ninfl || (l->spill && sl_spill_count(l->spill))) return false;
        }
    }
  return true;
}

static void drain_wake(uv_timer_t *t) { (void)t; }

static void drain_test(uv_check_t *h) {
  sl_gateway *gw = h->data;
  if (gw->stopping) return;
  bool empty = lanes_empty(gw);
  if (!empty && uv_now(gw->loop) < gw->drain_deadline) return;
  uv_check_stop(h);
  uv_timer_stop(&gw->drain_timer);
  if (empty)
    sl_log_info("drain: lanes empty and nothing in flight, closing the remaining sessions");
  else
    sl_log_warn("drain: drainTimeoutMs passed with messages still queued or in flight, closing the "
                "sessions");
  if (gw->on_drained) gw->on_drained(gw);
}

/* sl_drain_start: see drain.h. */
void sl_drain_start(sl_gateway *gw) {
  if (gw->stopping || gw->draining) return;
  gw->draining = true;
  int64_t ms = 0;
  for (size_t i = 0; i < gw->nservers; i++)
    if (gw->servers[i].cfg->drain_timeout_ms > ms) ms = gw->servers[i].cfg->drain_timeout_ms;
  gw->drain_deadline = uv_now(gw->loop) + (uint64_t)ms;
  sl_log_info("draining: new connections refused, /readyz answers 503; waiting up to %lld ms for "
              "lanes to empty",
              (long long)ms);
  uv_timer_init(gw->loop, &gw->drain_timer);
  gw->drain_timer.data = gw;
  uv_timer_start(&gw->drain_timer, drain_wake, 20, 20);
  uv_check_init(gw->loop, &gw->drain_check);
  gw->drain_check.data = gw;
  uv_check_start(&gw->drain_check, drain_test);
}
