/* delivery.h - the delivery layer, what the layers above it use: namespaces and topics
 * (topics.h), subscriptions, the offer policy and the pull (lanes.h), AT_LEAST_ONCE acks
 * (acks.h), spill files (lane_spill.h) and the publish pipeline (publish.h; its entry point
 * sl_publish is in sl_core.h). Inside the layer: lane.h (one lane's queue), keys.h (coalesce
 * keys), heap.h, sio_codec.h (the delivery packet), spill.h.
 *
 *   publish.c --> topics.c --> lanes.c --> acks.c --> lane_spill.c --> lane.c
 *        \--> keys.c, sio_codec.c           \------------------------------^ */
#ifndef SL_DELIVERY_H
#define SL_DELIVERY_H

#include "topics.h"
#include "lanes.h"
#include "acks.h"
#include "lane_spill.h"
#include "publish.h"

#endif
