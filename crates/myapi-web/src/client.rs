//! The client's address behind reverse proxies (`server.trusted_proxies`,
//! `server.client_ip_header`).
//!
//! Only the TCP peer is certain. When it is a trusted proxy, the one forwarding header the
//! proxies set is read from the right — the entries our own proxies appended — up to the first address that is
//! not a trusted proxy: that is the client. Whatever lies further left was written by the
//! client and is never read, so prepending entries cannot choose the result.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use actix_web::http::header::{self, HeaderMap, HeaderName};
use ipnet::{IpNet, Ipv4Net};
use myapi_services::config::comma_list;
use serde::{Deserialize, Deserializer};

/// The proxies whose [`ClientIpHeader`] is believed: networks and
/// single addresses. Empty believes no header. Registered as app data by `startup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `server.trusted_proxies` that is neither an address nor a network.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR network (such as 192.0.2.1 or 10.0.0.0/8)")]
pub struct InvalidProxy(String);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|network| network.contains(&ip))
    }

    fn parse_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, InvalidProxy> {
        entries
            .into_iter()
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_network)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The networks, comma-separated (the form [`FromStr`] reads).
impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, network) in self.0.iter().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{network}")?;
        }
        Ok(())
    }
}

/// A comma-separated list, as in `MYAPI_SERVER__TRUSTED_PROXIES`.
impl FromStr for TrustedProxies {
    type Err = InvalidProxy;

    fn from_str(list: &str) -> Result<Self, InvalidProxy> {
        Self::parse_entries(list.split(','))
    }
}

/// A TOML list or a comma-separated string; a bad entry fails the whole setting.
impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = comma_list(deserializer)?;
        Self::parse_entries(entries.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

/// `server.client_ip_header`: the one forwarding header read from trusted proxies.
///
/// Only one is read because a proxy passes on whatever it does not set itself: behind one
/// that appends to `X-Forwarded-For` only, a `Forwarded` header is entirely the client's
/// own, so reading it would let the client pick its address. Registered as app data by
/// `startup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, as nginx, HAProxy and most load balancers set it.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`.
    Forwarded,
}

impl ClientIpHeader {
    fn name(self) -> HeaderName {
        match self {
            Self::XForwardedFor => header::X_FORWARDED_FOR,
            Self::Forwarded => header::FORWARDED,
        }
    }
}

impl fmt::Display for ClientIpHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().as_str())
    }
}

/// A network, or a single address as a /32 or /128.
fn parse_network(entry: &str) -> Result<IpNet, InvalidProxy> {
    let network = entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| InvalidProxy(entry.to_owned()))?;
    Ok(canonical_network(network))
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: addresses are compared in their canonical form,
/// so an IPv4-mapped network must be written as IPv4 to match anything.
fn canonical_network(network: IpNet) -> IpNet {
    let IpNet::V6(v6) = network else {
        return network;
    };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(prefix)) => Ipv4Net::new(v4, prefix).map_or(network, IpNet::V4),
        _ => network,
    }
}

/// The client of a request that came from `peer` with `headers`.
///
/// An untrusted peer is the client, whatever its headers say. From a trusted peer, the hops
/// of the `forwarding` header (the other is never read) are walked from the right: the
/// first untrusted address is the client. A hop without an address
/// (`unknown`, obfuscated, malformed) ends the walk at the trusted hop that reported it, so
/// garbage cannot buy a fresh throttle key. If every hop is trusted, the left-most counts.
/// IPv4-mapped IPv6 addresses count as IPv4.
pub fn resolve_client(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    forwarding: ClientIpHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let parse_hop = match forwarding {
        ClientIpHeader::Forwarded => forwarded_for,
        ClientIpHeader::XForwardedFor => parse_node,
    };
    let hops = forwarding_hops(headers, forwarding.name(), parse_hop);
    let mut reporter = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if trusted.contains(ip) => reporter = ip,
            Some(ip) => return ip,
            None => return reporter,
        }
    }
    reporter
}

/// The `X-Request-Id` a trusted proxy sent for this request, if it is usable: one header
/// line of 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters (no spaces). From any other
/// peer, or when malformed, there is none and the caller makes its own: an id a client
/// chooses could forge or muddle log lines.
pub fn forwarded_request_id<'a>(
    peer: IpAddr,
    headers: &'a HeaderMap,
    trusted: &TrustedProxies,
) -> Option<&'a str> {
    if !trusted.contains(peer) {
        return None;
    }
    let mut values = headers.get_all(REQUEST_ID_HEADER);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let visible = (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
        && bytes.iter().all(|byte| (0x21..=0x7e).contains(byte));
    // Visible ASCII is UTF-8, so `to_str` cannot fail here.
    visible.then(|| value.to_str().ok()).flatten()
}

/// The request id header, read from trusted proxies and echoed on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id accepted from a proxy.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The hops of every `name` header line in order; `None` for a hop without an address.
///
/// Elements split at every comma, even inside quotes: no valid node contains one, and
/// splitting first means nothing a client prepends (an unclosed quote, say) can merge with
/// the entries proxies append after it. Empty elements are ignored (RFC 9110 §5.6.1).
fn forwarding_hops(
    headers: &HeaderMap,
    name: HeaderName,
    parse_hop: fn(&str) -> Option<IpAddr>,
) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for line in headers.get_all(name) {
        match line.to_str() {
            Ok(line) => hops.extend(
                line.split(',')
                    .map(str::trim)
                    .filter(|element| !element.is_empty())
                    .map(parse_hop),
            ),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The address in one `Forwarded` element's `for=` (RFC 7239 §4), quoted or not. An
/// element without exactly one `for` has none.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut nodes = element.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    });
    let node = nodes.next()?;
    if nodes.next().is_some() {
        return None;
    }
    let node = node
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(node);
    parse_node(node)
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
/// `unknown`, obfuscated identifiers (`_hidden`) and anything else have no address.
fn parse_node(node: &str) -> Option<IpAddr> {
    let ip = node
        .parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            let bracketed = node.strip_prefix('[')?.strip_suffix(']')?;
            bracketed.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    const PROXY: &str = "10.0.0.1";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The client resolved for a request from `PROXY`, which is trusted with `10.0.0.0/8`
    /// and sets `X-Forwarded-For` (the default).
    fn via_proxy(lines: &[(&str, &str)]) -> IpAddr {
        via(ClientIpHeader::XForwardedFor, lines)
    }

    /// The same from a proxy that sets `Forwarded`.
    fn via_forwarding_proxy(lines: &[(&str, &str)]) -> IpAddr {
        via(ClientIpHeader::Forwarded, lines)
    }

    fn via(forwarding: ClientIpHeader, lines: &[(&str, &str)]) -> IpAddr {
        resolve_client(
            ip(PROXY),
            &headers(lines),
            &trusted("10.0.0.0/8"),
            forwarding,
        )
    }

    #[test]
    fn entries_parse_as_networks_or_single_addresses() {
        let proxies = trusted(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,2001:db8:1::1,");
        assert!(proxies.contains(ip("10.255.0.1")));
        assert!(proxies.contains(ip("192.0.2.1")));
        assert!(!proxies.contains(ip("192.0.2.2")));
        assert!(proxies.contains(ip("2001:db8:ffff::1")));
        assert!(proxies.contains(ip("2001:db8:1::1")));
        assert!(!trusted("2001:db8:1::1").contains(ip("2001:db8:1::2")));
        assert!(trusted("").is_empty());
        assert_eq!(
            proxies.to_string().parse::<TrustedProxies>().unwrap(),
            proxies
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "not-a-cidr",
            "10.0.0.0/33",
            "10.0.0.1:80",
            "*",
            "10.0.0.0/8, nope",
        ] {
            let error = bad.parse::<TrustedProxies>().unwrap_err().to_string();
            assert!(
                error.contains("is not an IP address or CIDR network"),
                "{error}"
            );
        }
    }

    #[test]
    fn ipv4_mapped_addresses_and_networks_count_as_ipv4() {
        assert!(trusted("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(trusted("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(trusted("::ffff:192.0.2.1").contains(ip("192.0.2.1")));
        let none = trusted("");
        assert_eq!(
            resolve_client(
                ip("::ffff:192.0.2.9"),
                &HeaderMap::new(),
                &none,
                ClientIpHeader::XForwardedFor
            ),
            ip("192.0.2.9")
        );
        assert_eq!(
            via_proxy(&[("x-forwarded-for", "::ffff:203.0.113.7")]),
            ip("203.0.113.7")
        );
        let mapped_proxy = resolve_client(
            ip("::ffff:10.0.0.1"),
            &headers(&[("x-forwarded-for", "203.0.113.7")]),
            &trusted("10.0.0.0/8"),
            ClientIpHeader::XForwardedFor,
        );
        assert_eq!(mapped_proxy, ip("203.0.113.7"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers_say() {
        let lines = [
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.8"),
        ];
        let peer = ip("198.51.100.1");
        for forwarding in [ClientIpHeader::XForwardedFor, ClientIpHeader::Forwarded] {
            for networks in ["10.0.0.0/8", ""] {
                let client = resolve_client(peer, &headers(&lines), &trusted(networks), forwarding);
                assert_eq!(client, peer);
            }
        }
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        assert_eq!(
            via_proxy(&[("x-forwarded-for", "203.0.113.7")]),
            ip("203.0.113.7")
        );
        assert_eq!(
            via_proxy(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2")]),
            ip("203.0.113.7")
        );
        assert_eq!(via_proxy(&[]), ip(PROXY));
    }

    #[test]
    fn header_lines_of_one_name_are_concatenated_in_order() {
        let lines = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.3"),
            ("x-forwarded-for", "10.0.0.2"),
        ];
        assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let lines = [
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.8;proto=https"),
        ];
        assert_eq!(via_proxy(&lines), ip("203.0.113.7"));
        assert_eq!(via_forwarding_proxy(&lines), ip("203.0.113.8"));
        // The other header alone names nobody: the proxy is the client.
        assert_eq!(via_proxy(&lines[1..]), ip(PROXY));
        assert_eq!(via_forwarding_proxy(&lines[..1]), ip(PROXY));
    }

    #[test]
    fn the_header_setting_reads_its_two_names_and_nothing_else() {
        #[derive(Deserialize)]
        struct Server {
            client_ip_header: ClientIpHeader,
        }
        let read = |value: &str| {
            serde_json::from_value::<Server>(serde_json::json!({ "client_ip_header": value }))
                .map(|server| server.client_ip_header)
        };
        assert_eq!(
            read("x-forwarded-for").unwrap(),
            ClientIpHeader::XForwardedFor
        );
        assert_eq!(read("forwarded").unwrap(), ClientIpHeader::Forwarded);
        for bad in ["X-Forwarded-For", "x_forwarded_for", "both", ""] {
            assert!(read(bad).is_err(), "{bad}");
        }
        assert_eq!(ClientIpHeader::Forwarded.to_string(), "forwarded");
    }

    #[test]
    fn forwarded_nodes_may_be_quoted_bracketed_and_carry_ports() {
        for (value, client) in [
            (r#"for="[2001:db8::1]:4711""#, "2001:db8::1"),
            (r#"for="[2001:db8::1]""#, "2001:db8::1"),
            ("for=192.0.2.1:80", "192.0.2.1"),
            (r#"For="192.0.2.1";proto=http;by=10.0.0.1"#, "192.0.2.1"),
            ("for=198.51.100.1, for=192.0.2.60;proto=http", "192.0.2.60"),
            ("proto=https; for=192.0.2.61", "192.0.2.61"),
        ] {
            assert_eq!(
                via_forwarding_proxy(&[("forwarded", value)]),
                ip(client),
                "{value}"
            );
        }
    }

    #[test]
    fn x_forwarded_for_entries_may_carry_ports_and_brackets() {
        for (value, client) in [
            ("192.0.2.1:80", "192.0.2.1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(
                via_proxy(&[("x-forwarded-for", value)]),
                ip(client),
                "{value}"
            );
        }
    }

    #[test]
    fn a_hop_without_an_address_ends_the_walk_at_its_reporter() {
        for value in [
            "unknown",
            "_hidden",
            "garbage",
            "999.1.1.1",
            "\"192.0.2.1\"",
        ] {
            let lines = [("x-forwarded-for", format!("203.0.113.7, {value}, 10.0.0.2"))];
            let lines: Vec<_> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(via_proxy(&lines), ip("10.0.0.2"), "{value}");
        }
        for value in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=1.2.3.4;for=5.6.7.8",
        ] {
            assert_eq!(
                via_forwarding_proxy(&[("forwarded", value)]),
                ip(PROXY),
                "{value}"
            );
        }
        let mut map = headers(&[("x-forwarded-for", "203.0.113.7")]);
        map.append(
            header::X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        let client = resolve_client(
            ip(PROXY),
            &map,
            &trusted("10.0.0.0/8"),
            ClientIpHeader::XForwardedFor,
        );
        assert_eq!(client, ip(PROXY));
    }

    #[test]
    fn request_ids_are_taken_from_trusted_proxies_only_and_when_well_formed() {
        let id = |peer: &str, lines: &[(&str, &str)]| {
            let map = headers(lines);
            forwarded_request_id(ip(peer), &map, &trusted("10.0.0.0/8")).map(str::to_owned)
        };
        let longest = "x".repeat(MAX_REQUEST_ID_LEN);
        for good in ["a", "req-42", "!~", longest.as_str()] {
            assert_eq!(id(PROXY, &[("x-request-id", good)]).as_deref(), Some(good));
        }
        assert_eq!(
            id("::ffff:10.0.0.1", &[("x-request-id", "ok")]).as_deref(),
            Some("ok")
        );
        assert_eq!(id("203.0.113.7", &[("x-request-id", "ok")]), None);
        let too_long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "has space", "tab\there", too_long.as_str()] {
            assert_eq!(id(PROXY, &[("x-request-id", bad)]), None, "{bad:?}");
        }
        assert_eq!(id(PROXY, &[]), None);
        assert_eq!(
            id(PROXY, &[("x-request-id", "a"), ("x-request-id", "b")]),
            None
        );
        let mut map = HeaderMap::new();
        map.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            forwarded_request_id(ip(PROXY), &map, &trusted("10.0.0.0/8")),
            None
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_left_most_counts() {
        assert_eq!(
            via_proxy(&[("x-forwarded-for", "10.0.0.9, 10.0.0.8")]),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn empty_elements_are_ignored() {
        assert_eq!(
            via_proxy(&[("x-forwarded-for", ", 203.0.113.7,, 10.0.0.2 ,")]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn an_unclosed_quote_cannot_swallow_the_entries_after_it() {
        let value = r#"for="198.51.100.1, for=203.0.113.7"#;
        assert_eq!(
            via_forwarding_proxy(&[("forwarded", value)]),
            ip("203.0.113.7")
        );
    }

    /// One forwarding-header element: trusted and untrusted addresses (with and without
    /// ports), `unknown`, obfuscated names and garbage.
    fn element() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..4).prop_map(|host| format!("10.0.0.{host}")),
            (0u8..4).prop_map(|host| format!("203.0.113.{host}")),
            (0u8..4).prop_map(|host| format!("[2001:db8::{host}]:4711")),
            (0u8..4).prop_map(|host| format!("::ffff:10.0.0.{host}")),
            Just("unknown".to_owned()),
            Just("_hidden".to_owned()),
            "[ -~]{0,12}",
        ]
    }

    fn chain() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(element(), 0..6)
    }

    /// A header value from `elements`, in the syntax of `forwarding`.
    fn header_value(forwarding: ClientIpHeader, elements: &[String]) -> String {
        let elements: Vec<String> = match forwarding {
            ClientIpHeader::Forwarded => elements.iter().map(|e| format!("for=\"{e}\"")).collect(),
            ClientIpHeader::XForwardedFor => elements.to_vec(),
        };
        elements.join(", ")
    }

    fn forwarding() -> impl Strategy<Value = ClientIpHeader> {
        prop_oneof![
            Just(ClientIpHeader::Forwarded),
            Just(ClientIpHeader::XForwardedFor)
        ]
    }

    proptest! {
        #[test]
        fn no_header_from_an_untrusted_peer_changes_the_client(
            host in 0u8..=255,
            read in forwarding(),
            lines in proptest::collection::vec((forwarding(), "[ -~]{0,60}"), 0..4),
        ) {
            let peer = IpAddr::from([198, 51, 100, host]);
            let mut map = HeaderMap::new();
            for (header, value) in &lines {
                map.append(header.name(), HeaderValue::from_str(value).unwrap());
            }
            prop_assert_eq!(resolve_client(peer, &map, &trusted("10.0.0.0/8"), read), peer);
        }

        #[test]
        fn a_client_cannot_choose_its_address_by_prepending(
            header in forwarding(),
            prefix in chain(),
            appended in chain(),
            client in 0u8..=255,
            separate_line in any::<bool>(),
        ) {
            // What trusted proxies appended after the client's own entries: the client's
            // address, then any hops up to the peer.
            let real = [vec![format!("198.51.100.{client}")], appended].concat();
            let name = header.name();
            let alone = via(header, &[(name.as_str(), &header_value(header, &real))]);
            let prefixed_lines = if separate_line || prefix.is_empty() {
                vec![header_value(header, &prefix), header_value(header, &real)]
            } else {
                vec![header_value(header, &[prefix, real].concat())]
            };
            let lines: Vec<(&str, &str)> = prefixed_lines.iter().map(|v| (name.as_str(), v.as_str())).collect();
            let prefixed = via(header, &lines);
            prop_assert_eq!(prefixed, alone);
        }

        #[test]
        fn raw_prefixes_never_change_the_client(
            prefix in "[ -~]{0,40}",
            client in 0u8..=255,
        ) {
            let real = format!("198.51.100.{client}, 10.0.0.2");
            let forwarded_real = format!("for=198.51.100.{client}, for=\"10.0.0.2\"");
            for (header, value) in [
                (ClientIpHeader::XForwardedFor, real),
                (ClientIpHeader::Forwarded, forwarded_real),
            ] {
                let name = header.name();
                let joined = format!("{prefix}, {value}");
                let client_ip = IpAddr::from([198, 51, 100, client]);
                prop_assert_eq!(via(header, &[(name.as_str(), &joined)]), client_ip);
                prop_assert_eq!(via(header, &[(name.as_str(), &prefix), (name.as_str(), &value)]), client_ip);
            }
        }
    }
}
