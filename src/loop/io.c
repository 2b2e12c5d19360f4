/* Readiness: libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when its
 * next timeout is (CURLMOPT_TIMERFUNCTION); epoll waits on exactly those sockets and we hand
 * each ready one to curl_multi_socket_action. A wake-up costs the number of ready sockets,
 * not the number of open transfers (curl's multi-uv / multi-event examples do the same). */
#include "loop/io.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)easy;
  couch_loop *loop = userp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, s, NULL); /* EBADF when curl closed it first: fine */
    curl_multi_assign(loop->multi, s, NULL);
    return 0;
  }
  struct epoll_event ev = {0};
  ev.data.fd = s;
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(loop->epfd, op, s, &ev) != 0) {
    /* a reused descriptor number: switch between ADD and MOD */
    if (errno == EEXIST) epoll_ctl(loop->epfd, EPOLL_CTL_MOD, s, &ev);
    else if (errno == ENOENT) epoll_ctl(loop->epfd, EPOLL_CTL_ADD, s, &ev);
  }
  curl_multi_assign(loop->multi, s, (void *)1);
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  couch_loop *loop = userp;
  loop->curl_due_ms = timeout_ms < 0 ? -1 : couch_now_ms() + timeout_ms;
  return 0;
}

int couch_io_init(couch_loop *loop) {
  loop->curl_due_ms = -1;
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->epfd < 0 || loop->wake_fd < 0) return -1;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = loop->wake_fd};
  if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) != 0) return -1;
  curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
  curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
  return 0;
}

void couch_io_close(couch_loop *loop) {
  if (loop->epfd >= 0) close(loop->epfd);
  if (loop->wake_fd >= 0) close(loop->wake_fd);
  loop->epfd = loop->wake_fd = -1;
}

void couch_io_kick(couch_loop *loop) {
  if (loop->curl_due_ms < 0 || loop->curl_due_ms > couch_now_ms()) return;
  int running;
  loop->curl_due_ms = -1;
  curl_multi_socket_action(loop->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

int64_t couch_io_next_ms(const couch_loop *loop) {
  if (loop->curl_due_ms < 0) return -1;
  int64_t d = loop->curl_due_ms - couch_now_ms();
  return d > 0 ? d : 0;
}

void couch_io_wait(couch_loop *loop, int timeout_ms) {
  struct epoll_event evs[64];
  int n = epoll_wait(loop->epfd, evs, 64, timeout_ms);
  for (int i = 0; i < n; i++) {
    int fd = evs[i].data.fd;
    if (fd == loop->wake_fd) {
      uint64_t drained;
      if (read(fd, &drained, sizeof drained) < 0) { /* nothing to drain: fine */
      }
      continue;
    }
    int mask = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
               ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(loop->multi, fd, mask, &running);
  }
  couch_io_kick(loop);
}

void couch_io_wake(couch_loop *loop) {
  int fd = loop->wake_fd;
  uint64_t one = 1;
  if (fd >= 0 && write(fd, &one, sizeof one) < 0) { /* already signalled: fine */
  }
}
