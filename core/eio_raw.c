/* eio_raw.c - the raw Engine.IO endpoint: an sl_eio_handler above eio that hands sessions to
 * the server's eio_* hooks (sluice_hooks; Lua's engineIo.onOpen/onMessage/onClose), and the
 * sl_eio_conn API (sl_core.h, sluice.h) those hooks call back. */
#include <stdlib.h>
#include <string.h>
#include "eio_raw.h"
#include "eio.h"
#include "hooks.h"
#include "msg.h"
#include "sl_util.h"

/* A raw endpoint session as the hooks see it: lives from the handshake to the session's
 * close. */
struct sl_eio_conn {
  sl_session *sess;
  int slot; /* the hook implementation's own slot (Lua: the box's ref) */
};

static const char *raw_transport(const sl_session *s) {
  return s->transport == SL_TR_WS ? "websocket" : "polling";
}

static void raw_open(sl_session *s) {
  sl_log_info("engine.io session %s opened: path %s, remote %s, transport %s, server \"%s\"",
              s->sid, s->srv->cfg->eio_path, s->remote, raw_transport(s), s->srv->cfg->name);
  sl_eio_conn *e = sl_xcalloc(1, sizeof *e);
  e->sess = s;
  e->slot = SLUICE_NOSLOT;
  s->eio = e;
  const sl_hookset *hs = &s->srv->hooks;
  if (hs->fn.eio_open) hs->fn.eio_open(hs->ud[SL_HK_EIO_OPEN], e);
}

static void raw_message(sl_session *s, const uint8_t *data, size_t len, bool binary) {
  const sl_hookset *hs = &s->srv->hooks;
  if (s->eio && hs->fn.eio_message)
    hs->fn.eio_message(hs->ud[SL_HK_EIO_MESSAGE], s->eio, data, len, binary);
}

static void raw_close(sl_session *s, const char *reason) {
  if (!s->eio) return;
  sl_log_info("engine.io session %s closed: path %s, remote %s, transport %s, server \"%s\", "
              "reason \"%s\"",
              s->sid, s->srv->cfg->eio_path, s->remote, raw_transport(s), s->srv->cfg->name,
              reason ? reason : "");
  sl_eio_conn *e = s->eio;
  s->eio = NULL;
  const sl_hookset *hs = &s->srv->hooks;
  if (hs->fn.eio_close) hs->fn.eio_close(hs->ud[SL_HK_EIO_CLOSE], e, reason);
  sl_hooks_eio_free(s->srv, e);
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

/* sl_eio_conn_lua_slot: the hook implementation's slot (lua/ keeps its box ref there). */
int *sl_eio_conn_lua_slot(sl_eio_conn *c) { return &c->slot; }

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

/* sluice_eio_id, sluice_eio_send, sluice_eio_close: see sluice.h. */
const char *sluice_eio_id(const sluice_eio_conn *c) { return sl_eio_conn_id(c); }
int sluice_eio_send(sluice_eio_conn *c, const void *data, size_t len, int binary) {
  return sl_eio_conn_send(c, data, len, binary != 0);
}
void sluice_eio_close(sluice_eio_conn *c) { sl_eio_conn_close(c); }
