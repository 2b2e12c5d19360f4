/* Socket readiness for the loop: epoll on the sockets libcurl asks for. */
#ifndef COUCH_IO_H
#define COUCH_IO_H

#include "loop/loop.h"

int couch_io_init(couch_loop *loop);         /* -1 when the OS refuses an epoll / eventfd */
void couch_io_close(couch_loop *loop);
void couch_io_kick(couch_loop *loop);        /* run libcurl's timeout if it is due */
int64_t couch_io_next_ms(const couch_loop *loop); /* ms until libcurl's timeout, -1 none */
void couch_io_wait(couch_loop *loop, int timeout_ms); /* wait, then drive ready sockets */
void couch_io_wake(couch_loop *loop);                    /* async-signal-safe: end a wait now */

#endif
