/* eio_raw.h - the raw Engine.IO endpoint (server key engineIo): sessions without Socket.IO,
 * handed to the server's eio_* hooks (sluice_hooks; Lua's engineIo.onOpen/onMessage/onClose).
 * The sl_eio_conn_* API the hooks call back is declared in sl_core.h (sluice_eio_* in
 * sluice.h). */
#ifndef SL_EIO_RAW_H
#define SL_EIO_RAW_H

#include "eio.h"

/* The sl_eio_handler of raw endpoint sessions (srv->eio_handlers[1]): on_open gives the
 * session an sl_eio_conn and calls the eio_open hook, on_message eio_message, on_close
 * eio_close, then the eio_free hooks, and frees it. No work for a hook that is not set. */
extern const sl_eio_handler sl_eio_raw_handler;

#endif
