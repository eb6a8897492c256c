//! The login throttle under a flood of distinct keys, in a process of its own so the
//! memory it measures is the throttle's: 200,000 usernames from rotating IPv6 addresses,
//! first inside one /64, then across as many /64s. An account throttled before the flood
//! must still be throttled after it, and memory must stay under the stated bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use myapi_services::Settings;
use myapi_services::auth::{BudgetKeys, LoginBudget, MemoryBudget};

const FLOOD: u32 = 200_000;

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn address(network: u32, host: u32) -> IpAddr {
    let [a, b] = [(network >> 16) as u16, network as u16];
    let [c, d] = [(host >> 16) as u16, host as u16];
    Ipv6Addr::new(0x2001, 0xdb8, a, b, c, d, 1, 1).into()
}

#[test]
fn a_flood_neither_forgets_a_throttled_account_nor_outgrows_the_bound() {
    let settings = Settings::defaults().unwrap().auth;
    let burst = settings.account_failure_burst.get();
    let throttle = MemoryBudget::new(&settings);
    let keys = BudgetKeys::new(&settings);
    let reserve =
        |account: &str, client: IpAddr| throttle.reserve(&keys.attempt(account, client), None);
    let attacker: IpAddr = Ipv4Addr::new(192, 0, 2, 66).into();
    for _ in 0..burst {
        reserve("victim@example.com", attacker).unwrap();
    }
    let fresh: IpAddr = Ipv4Addr::new(198, 51, 100, 7).into();
    assert!(reserve("victim@example.com", fresh).is_err());
    let before = resident_bytes();
    let started = Instant::now();

    // One /64: its budget runs out after a handful of attempts, whatever the address.
    let admitted_one = (0..FLOOD)
        .filter(|i| {
            let username = format!("flood-{i}@example.com");
            reserve(&username, address(0, *i)).is_ok()
        })
        .count();
    // Many /64s: every attempt is admitted, and every key is new.
    let admitted_many = (0..FLOOD)
        .filter(|i| {
            let username = format!("spread-{i}@example.com");
            reserve(&username, address(i + 1, 1)).is_ok()
        })
        .count();

    let grown = resident_bytes().saturating_sub(before);
    let bound = throttle.max_bytes();
    eprintln!(
        "flood of 2 x {FLOOD} usernames in {:.1?}: {admitted_one} admitted from one /64, \
         {admitted_many} from distinct /64s; resident memory grew {} KiB, bound {} KiB",
        started.elapsed(),
        grown / 1024,
        bound / 1024,
    );
    assert_eq!(
        admitted_one as u32,
        settings.ip_failure_burst.get(),
        "one /64 is one client"
    );
    assert_eq!(admitted_many as u32, FLOOD);
    assert!(
        reserve("victim@example.com", fresh).is_err(),
        "the account throttled before the flood is still throttled"
    );
    assert!(grown <= bound, "grew {grown} bytes, bound {bound}");
}
