/* window.h - batching windows (flushIntervalMs): deliveries wait a few milliseconds so that
 * each connection gets them in one write instead of one write per publish (window.c).
 *
 * The loop's flush (gateway.c) writes every session on the gateway's dirty list at the end of
 * each loop iteration. A session whose deliveries may wait is put on a window instead: one
 * list and one timer per interval (not per connection), opened by the first session added
 * and closed `ms` later, when the whole list moves to the dirty list and is written by that
 * iteration's flush. So a delivery waits at most its interval (plus the loop's 1 ms timer
 * granularity) and every session that got anything in that interval is written once.
 *
 * window knows only sl_link lists and the gateway's dirty list: which sessions may wait and
 * what closes a window early is decided by the callers (eio.c sl_session_defer and
 * sl_session_mark_dirty, lane.h sl_lane_ready). */
#ifndef SL_WINDOW_H
#define SL_WINDOW_H

#include "sl_internal.h"

/* SL_WINDOWS_MAX (sl_internal.h): the most intervals in use at once (distinct
 * flushIntervalMs values, across reloads: an idle window is reused for another value). */

/* sl_window_add: keep `link` (a session's dlink, not on any list) on the window of `ms`
 * milliseconds (> 0), opening it (starting its timer) if it is not open; when it closes the
 * link moves to the tail of gw->dirty. Returns true. Returns false, and pushes the link on
 * gw->dirty at once, when SL_WINDOWS_MAX other intervals are all in use or the gateway is
 * stopping. Allocates a window the first time an interval is used (aborts on OOM). */
bool sl_window_add(sl_gateway *gw, sl_link *link, uint32_t ms);

/* sl_window_stop: close every window's timer through close_handle (the gateway's, which
 * counts the handles it waits for); links still on a window stay there (their owners remove
 * them as they close). Idempotent. */
void sl_window_stop(sl_gateway *gw, void (*close_handle)(sl_gateway *, uv_handle_t *));

/* sl_window_free: free the windows. Call after sl_window_stop's handles are closed (or when
 * the loop never ran them). */
void sl_window_free(sl_gateway *gw);

#endif
