/* delivery.h - the delivery layer, what the layers above it use: namespaces and topics
 * (topics.h), subscriptions, the offer policy and the pull (lanes.h), AT_LEAST_ONCE acks
 * (acks.h), spill files (lane_spill.h) and the publish pipeline (publish.h; its entry point
 * sl_publish is in sl_core.h). Inside the layer: lane.h (one lane's queue), keys.h (coalesce
 * keys), heap.h, sio_codec.h (the delivery packet), spill.h.
 *
 * Calls inside the layer point one way (no cycle): publish -> topics, lanes, keys, sio_codec,
 * recovery; topics -> lanes, recovery; recovery -> lanes, acks, lane; lanes -> acks, lane_spill, lane; acks -> lane_spill, lane, heap;
 * lane_spill -> lane, spill. */
#ifndef SL_DELIVERY_H
#define SL_DELIVERY_H

#include "topics.h"
#include "lanes.h"
#include "acks.h"
#include "lane_spill.h"
#include "recovery.h"
#include "publish.h"

#endif
