/* eio_raw.c - the raw Engine.IO endpoint: an sl_eio_handler above eio that hands sessions to
 * the Lua hooks of engineIo, and the sl_eio_conn API (sl_core.h) those hooks call back. */
#include <stdlib.h>
#include <string.h>
#include "eio_raw.h"
#include "../lua/sl_lua.h"

/* A raw endpoint session as Lua sees it: lives from the handshake to the session's close. */
struct sl_eio_conn {
  sl_session *sess;
  int lua_ref;
};

static void raw_open(sl_session *s) {
  sl_eio_conn *e = sl_xcalloc(1, sizeof *e);
  e->sess = s;
  e->lua_ref = SL_NOREF;
  s->eio = e;
  sl_gateway *gw = s->srv->gw;
  if (gw->lua && s->srv->cfg->eio_on_open_ref != SL_NOREF)
    sl_lua_eio_event(gw->lua, s->srv->cfg->eio_on_open_ref, e, "open");
}

static void raw_message(sl_session *s, const uint8_t *data, size_t len, bool binary) {
  if (s->eio && s->srv->gw->lua)
    sl_lua_eio_message(s->srv->gw->lua, s->srv->cfg->eio_on_message_ref, s->eio, data, len,
                       binary);
}

static void raw_close(sl_session *s, const char *reason) {
  if (!s->eio) return;
  sl_eio_conn *e = s->eio;
  s->eio = NULL;
  sl_gateway *gw = s->srv->gw;
  if (gw->lua && s->srv->cfg->eio_on_close_ref != SL_NOREF)
    sl_lua_eio_event(gw->lua, s->srv->cfg->eio_on_close_ref, e, reason);
  if (gw->lua) sl_lua_eio_gone(gw->lua, e);
  free(e);
}

const sl_eio_handler sl_eio_raw_handler = {
  .on_open = raw_open,
  .on_message = raw_message,
  .on_close = raw_close,
  .on_pull = NULL, /* no lanes: everything is sent at once with sl_session_send */
};

/* ---- the raw endpoint API (sl_core.h) -------------------------------------------------- */

/* sl_eio_conn_id: the session id, "" once the session is gone. */
const char *sl_eio_conn_id(const sl_eio_conn *c) { return c->sess ? c->sess->sid : ""; }

/* sl_eio_conn_lua_slot: storage for the connection's Lua box ref (owned by lua/). */
int *sl_eio_conn_lua_slot(sl_eio_conn *c) { return &c->lua_ref; }

/* sl_eio_conn_send: send one Engine.IO message (text or binary). */
int sl_eio_conn_send(sl_eio_conn *c, const void *data, size_t len, bool binary) {
  if (!c->sess || c->sess->state == SL_ST_CLOSED) return SL_ESTATE;
  sl_msg *m;
  if (binary) {
    m = sl_msg_packet_new(data, len, true, SL_MK_CONTROL);
  } else {
    m = sl_msg_new(len + 1, SL_MK_CONTROL);
    sl_msg_packet(m)[0] = '4';
    if (len) memcpy(sl_msg_packet(m) + 1, data, len);
    sl_msg_frame_finish(m);
  }
  sl_session_send(c->sess, m);
  return 0;
}

/* sl_eio_conn_close: close the connection's session with reason "server close": Lua's
 * onClose runs (synchronously, possibly from inside the hook that called this) and the
 * sl_eio_conn is freed, so c must not be used afterwards. No-op when already gone. */
void sl_eio_conn_close(sl_eio_conn *c) {
  if (c->sess) sl_session_close(c->sess, "server close");
}
