#include <stdio.h>
#include "shim.h"

uint16_t ms_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_rx_burst(port, queue, pkts, n);
}
uint16_t ms_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
    return rte_eth_tx_burst(port, queue, pkts, n);
}
struct rte_mbuf *ms_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int ms_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n) {
    return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}
void ms_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void ms_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n) { rte_pktmbuf_free_bulk(mbufs, n); }
uint8_t *ms_pktmbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }
uint16_t ms_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t ms_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t ms_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t ms_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint8_t *ms_pktmbuf_append(struct rte_mbuf *m, uint16_t len) {
    return (uint8_t *)rte_pktmbuf_append(m, len);
}
int ms_pktmbuf_set_len(struct rte_mbuf *m, uint16_t len) {
    if (m->nb_segs != 1 || len > m->data_len) return -1;
    m->data_len = len;
    m->pkt_len = len;
    return 0;
}
uint64_t ms_pktmbuf_ol_flags(const struct rte_mbuf *m) { return m->ol_flags; }
void ms_prefetch0(const void *p) { rte_prefetch0(p); }
unsigned int ms_lcore_id(void) { return rte_lcore_id(); }
int ms_errno(void) { return rte_errno; }
uint64_t ms_rdtsc(void) { return rte_rdtsc(); }
const char *ms_version(void) { return rte_version(); }
uint64_t ms_rss_hf_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
int ms_link_get(uint16_t port, uint32_t *speed_mbps, int *up) {
    struct rte_eth_link link;
    int rc = rte_eth_link_get_nowait(port, &link);
    if (rc != 0) return rc;
    *speed_mbps = link.link_speed;
    *up = link.link_status == RTE_ETH_LINK_UP;
    return 0;
}

int ms_ring_port_pair(const char *name, unsigned int ring_size, uint16_t *port_a, uint16_t *port_b) {
    char n[RTE_RING_NAMESIZE];
    int socket = (int)rte_socket_id();
    if (socket < 0) socket = 0;
    snprintf(n, sizeof(n), "%s_ab", name);
    struct rte_ring *ab = rte_ring_create(n, ring_size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (ab == NULL) return -1;
    snprintf(n, sizeof(n), "%s_ba", name);
    struct rte_ring *ba = rte_ring_create(n, ring_size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (ba == NULL) { rte_ring_free(ab); return -1; }
    snprintf(n, sizeof(n), "%s_a", name);
    int a = rte_eth_from_rings(n, &ba, 1, &ab, 1, (unsigned)socket);
    if (a < 0) { rte_ring_free(ab); rte_ring_free(ba); return -1; }
    snprintf(n, sizeof(n), "%s_b", name);
    int b = rte_eth_from_rings(n, &ab, 1, &ba, 1, (unsigned)socket);
    if (b < 0) return -1;
    *port_a = (uint16_t)a;
    *port_b = (uint16_t)b;
    return 0;
}
