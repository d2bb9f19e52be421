/* Exported wrappers for DPDK's static-inline fast-path functions.
 * bindgen cannot call inline functions, so each one the appliance uses gets a
 * real symbol here. Keep them thin: the compiler inlines the DPDK body into
 * the wrapper, so a call costs one direct jump from Rust. */
#ifndef METRICSSTREAM_SHIM_H
#define METRICSSTREAM_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>

uint16_t ms_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t ms_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *ms_pktmbuf_alloc(struct rte_mempool *mp);
int ms_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n);
void ms_pktmbuf_free(struct rte_mbuf *m);
void ms_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n);
uint8_t *ms_pktmbuf_data(struct rte_mbuf *m);
uint16_t ms_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t ms_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t ms_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t ms_pktmbuf_tailroom(const struct rte_mbuf *m);
/* Appends len bytes to a single-segment mbuf; NULL when there is no room. */
uint8_t *ms_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/* Trims the mbuf to len bytes (single segment); -1 when len > data_len. */
int ms_pktmbuf_set_len(struct rte_mbuf *m, uint16_t len);
uint64_t ms_pktmbuf_ol_flags(const struct rte_mbuf *m);
void ms_prefetch0(const void *p);
unsigned int ms_lcore_id(void);
int ms_errno(void);
uint64_t ms_rdtsc(void);
const char *ms_version(void);
/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP: function-like macros bindgen cannot evaluate. */
uint64_t ms_rss_hf_ip_tcp_udp(void);
/* Link status without blocking: 0 on success. */
int ms_link_get(uint16_t port, uint32_t *speed_mbps, int *up);
/* Two ethdevs wired back to back by two single-producer/single-consumer rings
 * of ring_size slots: what one transmits the other receives (the net_ring PMD's
 * rte_eth_from_rings; its `nodeaction=` devargs share one ring per queue for RX
 * and TX, a loopback, not a pair). Names: "<name>_a" / "<name>_b". Returns 0 and
 * the port ids, or -1 with rte_errno set. The rings live as long as the process. */
int ms_ring_port_pair(const char *name, unsigned int ring_size, uint16_t *port_a, uint16_t *port_b);

#endif
