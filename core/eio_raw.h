/* eio_raw.h - the raw Engine.IO endpoint (server key engineIo): sessions without Socket.IO,
 * handed to Lua's engineIo.onOpen/onMessage/onClose (eio_raw.c). The sl_eio_conn_* API the
 * Lua binding calls is declared in sl_core.h. */
#ifndef SL_EIO_RAW_H
#define SL_EIO_RAW_H

#include "eio.h"

/* The sl_eio_handler of raw endpoint sessions (srv->eio_handlers[1]): on_open gives the
 * session an sl_eio_conn and calls onOpen, on_message calls onMessage, on_close calls
 * onClose, tells Lua the connection is gone and frees it. No Lua work when no VM is set. */
extern const sl_eio_handler sl_eio_raw_handler;

#endif
