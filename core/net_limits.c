/* net_limits.c - the net layer's admission limits and inbound-budget accounting: per-address
 * connection slots and handshake rate, the charge of each connection in the inbound budget,
 * the refusal counters, and a peer's address. Part of the net layer (net.h); net.c calls it,
 * it calls nothing in net.c. What the two files share is in net_int.h. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <arpa/inet.h>
#include "net.h"
#include "net_int.h"
#include "sl_util.h"

const char *const sl_refuse_reasons[SL_REFUSE_COUNT] = {
    "max_connections", "max_connections_per_address",
    "max_sessions",    "handshake_rate",
    "inbound_buffers", "partial_timeout"};

/* The admission counts of one peer address (only for addresses the per-address limits
 * apply to). Kept while a connection from it is open, then until its handshake window ends
 * (so that reconnecting does not reset the rate). */
typedef struct sl_addr_slot {
  sl_hent hent; /* in srv->lim.addrs, key = addr */
  sl_link idle; /* in srv->lim.idle_addrs while conns == 0 */
  uint32_t conns;
  uint32_t hs_count; /* handshakes in the window that started at hs_window */
  uint64_t hs_window;
  char addr[INET6_ADDRSTRLEN];
} sl_addr_slot;

/* sl__net_addr_sweep: see net_int.h. */
void sl__net_addr_sweep(sl_server *srv, uint64_t now) {
  sl_limits *L = &srv->lim;
  if (!L->idle_addrs.next) return;
  sl_link *l = L->idle_addrs.next;
  while (l != &L->idle_addrs) {
    sl_link *nx = l->next;
    sl_addr_slot *a = sl_container_of(l, sl_addr_slot, idle);
    if (now - a->hs_window >= SL_HANDSHAKE_WINDOW_MS) {
      sl_list_del(&a->idle);
      sl_hash_del(&L->addrs, &a->hent);
      free(a);
    }
    l = nx;
  }
}

/* ---- admission ------------------------------------------------------------------------ */

/* sl__net_addr_admit: see net_int.h. */
int sl__net_addr_admit(sl_conn *c) {
  sl_server *srv = c->srv;
  sl_limits *L = &srv->lim;
  char a[INET6_ADDRSTRLEN];
  sl_conn_remote(c, a, sizeof a);
  if (!srv->cfg->limit_loopback && sl_addr_is_loopback(a)) return -1;
  sl_hent *e = sl_hash_get(&L->addrs, a);
  sl_addr_slot *slot;
  if (e) {
    slot = sl_container_of(e, sl_addr_slot, hent);
  } else {
    slot = sl_xcalloc(1, sizeof *slot);
    memcpy(slot->addr, a, sizeof slot->addr);
    sl_hash_put(&L->addrs, &slot->hent, slot->addr);
    slot->hs_window = uv_now(srv->gw->loop) - SL_HANDSHAKE_WINDOW_MS;
    sl_list_push(&L->idle_addrs, &slot->idle);
  }
  if (slot->conns >= (uint64_t)srv->cfg->max_conns_per_addr) return SL_REFUSE_PER_ADDRESS;
  if (slot->conns++ == 0) sl_list_del(&slot->idle);
  c->addr = slot;
  return -1;
}

/* sl__net_addr_release: see net_int.h. */
void sl__net_addr_release(sl_conn *c) {
  sl_addr_slot *slot = c->addr;
  if (!slot) return;
  c->addr = NULL;
  if (--slot->conns == 0) sl_list_push(&c->srv->lim.idle_addrs, &slot->idle);
}

/* sl_conn_admit_handshake: see net.h. A fixed one-second window per address. */
bool sl_conn_admit_handshake(sl_conn *c) {
  sl_addr_slot *a = c->addr;
  if (!a) return true;
  uint64_t now = uv_now(c->srv->gw->loop);
  if (now - a->hs_window >= SL_HANDSHAKE_WINDOW_MS) {
    a->hs_window = now;
    a->hs_count = 0;
  }
  if (a->hs_count >= (uint64_t)c->srv->cfg->max_handshake_rate) {
    c->srv->lim.refused[SL_REFUSE_HANDSHAKE_RATE]++;
    return false;
  }
  a->hs_count++;
  return true;
}

/* sl_server_count_refusal: see net.h. */
void sl_server_count_refusal(sl_server *srv, int reason) {
  if (reason >= 0 && reason < SL_REFUSE_COUNT) srv->lim.refused[reason]++;
}

/* sl__net_set_charge: see net_int.h. */
void sl__net_set_charge(sl_conn *c, uint64_t bytes) {
  sl_limits *L = &c->srv->lim;
  uint64_t was = sl_conn_charged(c);
  if (bytes == was) return;
  L->inbound = L->inbound - was + bytes;
  if (bytes)
    sl_heap_update(&L->big, &c->inb, ~bytes);
  else
    sl_heap_remove(&L->big, &c->inb);
  if (L->inbound > L->inbound_peak) L->inbound_peak = L->inbound;
}

/* sl_conn_remote: see net.h. */
const char *sl_conn_remote(sl_conn *c, char *buf, size_t len) {
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  buf[0] = 0;
  if (c->tcp.type == UV_NAMED_PIPE) {
    snprintf(buf, len, "unix");
    return buf;
  }
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
    else if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
  }
  return buf;
}

/* sl_net_server_free: see net.h. */
void sl_net_server_free(sl_server *srv) {
  sl_limits *L = &srv->lim;
  for (size_t b = 0; b < L->addrs.nb; b++) {
    sl_hent *e = L->addrs.b[b];
    while (e) {
      sl_hent *nx = e->hnext;
      free(sl_container_of(e, sl_addr_slot, hent));
      e = nx;
    }
  }
  sl_hash_free(&L->addrs);
  sl_list_init(&L->idle_addrs);
  sl_heap_free(&L->big);
}
