/* net_int.h - private to the net layer: what net.c and net_limits.c share. net.c calls
 * net_limits.c, never the other way round. Not for any other module. */
#ifndef SL_NET_INT_H
#define SL_NET_INT_H

#include <stdint.h>
#include "net.h"

/* The per-address handshake window (maxHandshakeRate counts handshakes per window). */
#define SL_HANDSHAKE_WINDOW_MS 1000

/* sl__net_addr_admit: take one connection slot of c's peer address (stored in c->addr),
 * unless the per-address limits do not apply to it (loopback without limitLoopback).
 * Returns -1 (admitted, or not limited), or SL_REFUSE_PER_ADDRESS when the address has
 * maxConnectionsPerAddress already (c->addr left NULL). The slot is owned by srv->lim. */
int sl__net_addr_admit(sl_conn *c);

/* sl__net_addr_release: give back c's address slot, if it holds one (idempotent). A slot
 * left without connections is kept until its handshake window ends (sl__net_addr_sweep). */
void sl__net_addr_release(sl_conn *c);

/* sl__net_addr_sweep: free srv's per-address slots whose connections are gone and whose
 * handshake window ended by `now` (loop milliseconds). Cannot fail. */
void sl__net_addr_sweep(sl_server *srv, uint64_t now);

/* sl__net_set_charge: charge c `bytes` of the server's inbound budget, replacing what it
 * had (0 uncharges it); keeps the heap of the largest holders and the peak. Cannot fail;
 * does not refuse anyone (sl_conn_inbound does). */
void sl__net_set_charge(sl_conn *c, uint64_t bytes);

#endif
