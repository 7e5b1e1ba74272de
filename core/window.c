/* window.c - batching windows: one list and one timer per flush interval (window.h). */
#include <stdlib.h>
#include "window.h"
#include "sl_util.h"

struct sl_window {
  uv_timer_t timer; /* data: the window */
  sl_gateway *gw;
  sl_link list; /* sessions (their dlink) waiting for this window to close */
  uint32_t ms;
  bool open; /* the timer runs */
};

/* The window closed: its sessions go to the tail of the dirty list, which the loop's flush
 * (the prepare handle, after this iteration's timers) writes. */
static void window_cb(uv_timer_t *t) {
  sl_window *w = t->data;
  sl_gateway *gw = w->gw;
  w->open = false;
  if (sl_list_empty(&w->list)) return;
  sl_link *first = w->list.next, *last = w->list.prev, *tail = gw->dirty.prev;
  tail->next = first;
  first->prev = tail;
  last->next = &gw->dirty;
  gw->dirty.prev = last;
  sl_list_init(&w->list);
  gw->windows_closed++;
}

/* The window of `ms`: the one open or kept for it, else an idle one relabelled, else a new
 * one; NULL when SL_WINDOWS_MAX are in use. */
static sl_window *window_for(sl_gateway *gw, uint32_t ms) {
  for (unsigned i = 0; i < gw->nwindows; i++)
    if (gw->windows[i]->ms == ms) return gw->windows[i];
  for (unsigned i = 0; i < gw->nwindows; i++) {
    sl_window *w = gw->windows[i];
    if (!w->open && sl_list_empty(&w->list)) {
      w->ms = ms;
      return w;
    }
  }
  if (gw->nwindows == SL_WINDOWS_MAX) return NULL;
  sl_window *w = sl_xcalloc(1, sizeof *w);
  uv_timer_init(gw->loop, &w->timer);
  uv_unref((uv_handle_t *)&w->timer);
  w->timer.data = w;
  w->gw = gw;
  w->ms = ms;
  sl_list_init(&w->list);
  gw->windows[gw->nwindows++] = w;
  return w;
}

/* sl_window_add: see window.h. */
bool sl_window_add(sl_gateway *gw, sl_link *link, uint32_t ms) {
  sl_window *w = gw->stopping ? NULL : window_for(gw, ms);
  if (!w) {
    sl_list_push(&gw->dirty, link);
    return false;
  }
  sl_list_push(&w->list, link);
  if (!w->open) {
    w->open = true;
    uv_timer_start(&w->timer, window_cb, ms, 0);
  }
  return true;
}

/* sl_window_stop: see window.h. */
void sl_window_stop(sl_gateway *gw, void (*close_handle)(sl_gateway *, uv_handle_t *)) {
  for (unsigned i = 0; i < gw->nwindows; i++) {
    sl_window *w = gw->windows[i];
    w->open = false;
    close_handle(gw, (uv_handle_t *)&w->timer);
  }
}

/* sl_window_free: see window.h. */
void sl_window_free(sl_gateway *gw) {
  for (unsigned i = 0; i < gw->nwindows; i++) {
    sl_window *w = gw->windows[i];
    free(w);
  }
  gw->nwindows = 0;
}
