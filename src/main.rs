fn main(){ println!("{}", metricsstream::dpdk::version()); }
