/* drain.h - the wait of a graceful drain (sluice_drain in sluice.h): while draining, the
 * Engine.IO layer refuses handshakes (it reads gw->draining) and /readyz answers 503; this
 * module waits until no lane holds a pending, in-flight or spilled message, or until the
 * largest drainTimeoutMs of the servers has passed, then calls gw->on_drained (the gateway's
 * stop, installed by sl_gateway_new) - upward through that pointer, as it sits below the
 * gateway. */
#ifndef SL_DRAIN_H
#define SL_DRAIN_H

#include "sl_internal.h"

/* sl_drain_start: set gw->draining and start waiting. Idempotent; a no-op when the gateway
 * is stopping. Never fails. */
void sl_drain_start(sl_gateway *gw);

#endif
