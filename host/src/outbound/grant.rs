//! What a task may reach: origin patterns in Spin's syntax
//! (`scheme://host[:port]`, `*` and `*.domain` wildcards, no paths) and the
//! networks an address may be in.
//!
//! Invariants:
//! - A pattern is parsed once, when the workflow file (or the worker's
//!   command line, or a checkpoint record) is read; matching cannot fail.
//! - An address that is not publicly routable ([`Reach::Inward`]: loopback,
//!   private, link-local, the cloud metadata address, CGNAT, unique-local,
//!   multicast, reserved) is reached only when the grant names it: the
//!   matching pattern's host is that IP literal or `localhost` (loopback
//!   only), or one of `allow_networks` holds it. A name under `*` or
//!   `*.domain` never reaches inward, so a public name that resolves to
//!   127.0.0.1 (DNS rebinding) is refused.
//! - The unspecified address (`0.0.0.0`, `::`) is never reached.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// The host of a request: a lower-case DNS name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Where a request goes: scheme, host and port (the default port filled in).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Name or IP literal.
    pub host: Host,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == self.scheme.default_port() {
            write!(f, "{}://{}", self.scheme, self.host)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Why a host name or origin is refused when it is parsed.
fn parse_host(h: &str) -> Result<Host, String> {
    if let Some(inner) = h.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| format!("'{h}' is not a bracketed IPv6 address"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("'{h}' is not an IPv6 address"));
    }
    if let Ok(ip) = h.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let name = h.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("'{h}' is not a host name"));
    }
    // A name made only of digits and dots is an IPv4 address in some
    // resolvers' eyes (`127.1`); refuse it rather than guess.
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("'{h}' is neither a host name nor a full IPv4 address"));
    }
    Ok(Host::Name(name))
}

impl Origin {
    /// The origin of an absolute `http`/`https` URI.
    pub fn of_uri(uri: &http::Uri) -> Result<Origin, String> {
        let scheme = uri
            .scheme_str()
            .and_then(Scheme::parse)
            .ok_or_else(|| format!("'{uri}' is not an http:// or https:// URL"))?;
        let authority = uri.authority().ok_or_else(|| format!("'{uri}' names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("'{uri}' carries user information, which is not allowed"));
        }
        let host = parse_host(authority.host())?;
        // What follows the host: nothing, or `:port` (the http crate reads a
        // port past 65535 as no port at all: refuse it, never default it).
        let written = authority.as_str().strip_prefix(authority.host()).unwrap_or(":");
        let port = match written {
            "" => scheme.default_port(),
            p => p
                .strip_prefix(':')
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    format!("'{uri}' has port '{}', not a port from 1 to 65535", p.trim_start_matches(':'))
                })?,
        };
        Ok(Origin { scheme, host, port })
    }
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any name (never an inward address).
    Any,
    /// `*.example.com`: any name under the domain (not the domain itself).
    Under(String),
    /// `api.example.com`.
    Name(String),
    /// `localhost`: the name, and the loopback addresses it resolves to.
    Localhost,
    /// `10.1.2.3`, `[::1]`: that address, named explicitly.
    Ip(IpAddr),
}

/// One entry of an allow-list: `scheme://host[:port]`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OriginPattern {
    text: String,
    scheme: Option<Scheme>,
    host: HostPattern,
    /// `None`: any port (`:*`). Absent from the text: the scheme's default.
    port: Option<u16>,
}

impl From<OriginPattern> for String {
    fn from(p: OriginPattern) -> String {
        p.text
    }
}

impl TryFrom<String> for OriginPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        OriginPattern::parse(&s)
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl OriginPattern {
    /// Parse `scheme://host[:port]`: scheme `http`, `https` or `*`; host `*`,
    /// `*.domain`, a name, `localhost`, an IPv4 address or a bracketed IPv6
    /// one; port a number or `*` (absent: the scheme's default port; with
    /// scheme `*`, any port). No path, query or user information.
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        let bad = |why: &str| {
            format!(
                "'{s}' is not an origin pattern: {why} (expected scheme://host[:port], e.g. \"https://api.example.com\" or \"https://*.example.com:8443\")"
            )
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme {
            "*" => None,
            s => Some(Scheme::parse(s).ok_or_else(|| bad("the scheme must be http, https or *"))?),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("it has a path; grants name origins only"));
        }
        if rest.contains('@') {
            return Err(bad("it has user information"));
        }
        // Split the port off (an IPv6 literal is bracketed).
        let (host, port) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let port = match port {
            None => scheme.map(Scheme::default_port),
            Some("*") => None,
            Some(p) => Some(
                Some(p)
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port must be 1-65535 or *"))?,
            ),
        };
        let host = match host {
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => match parse_host(&h[2..]).map_err(|e| bad(&e))? {
                Host::Name(n) => HostPattern::Under(n),
                Host::Ip(_) => return Err(bad("a wildcard cannot stand before an IP address")),
            },
            h if h.contains('*') => return Err(bad("'*' may only be the whole host or its first label")),
            h => match parse_host(h).map_err(|e| bad(&e))? {
                Host::Name(n) if n == "localhost" => HostPattern::Localhost,
                Host::Name(n) => HostPattern::Name(n),
                Host::Ip(ip) if canonical(ip).is_unspecified() => {
                    return Err(bad("the unspecified address is never reachable"));
                }
                Host::Ip(ip) => HostPattern::Ip(ip),
            },
        };
        Ok(OriginPattern { text: s.to_string(), scheme, host, port })
    }

    /// True if `origin` is one this pattern allows (addresses not yet checked).
    pub fn matches(&self, origin: &Origin) -> bool {
        if self.scheme.is_some_and(|s| s != origin.scheme) || self.port.is_some_and(|p| p != origin.port) {
            return false;
        }
        match (&self.host, &origin.host) {
            (HostPattern::Any, Host::Name(_)) => true,
            (HostPattern::Under(d), Host::Name(n)) => {
                n.len() > d.len() + 1 && n.ends_with(d.as_str()) && n.as_bytes()[n.len() - d.len() - 1] == b'.'
            }
            (HostPattern::Name(p), Host::Name(n)) => p == n,
            (HostPattern::Localhost, Host::Name(n)) => n == "localhost",
            (HostPattern::Ip(p), Host::Ip(ip)) => canonical(*p) == canonical(*ip),
            _ => false,
        }
    }

    /// True if this pattern names `addr` explicitly (its IP literal, or
    /// `localhost` for a loopback address).
    fn names(&self, addr: IpAddr) -> bool {
        match &self.host {
            HostPattern::Ip(ip) => canonical(*ip) == canonical(addr),
            HostPattern::Localhost => canonical(addr).is_loopback(),
            _ => false,
        }
    }
}

/// A network a resolved address may be in although it is inward: a CIDR
/// (`10.0.0.0/8`) or one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network(IpNet);

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.0.to_string()
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Network::parse(&s)
    }
}

impl Network {
    /// Parse a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
    pub fn parse(s: &str) -> Result<Network, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Network(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Network(IpNet::from(ip)))
            .map_err(|_| format!("'{s}' is neither an IP address nor a CIDR such as \"10.0.0.0/8\""))
    }
    fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&canonical(addr))
    }
}

/// An address with an IPv4-mapped or NAT64 IPv6 form turned into the IPv4
/// address it carries, so `::ffff:127.0.0.1` is classified as loopback.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            // 64:ff9b::/96 (NAT64) and the deprecated ::a.b.c.d compatible form.
            if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]) || (s[..6] == [0; 6] && s[6] != 0) {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            addr
        }
        v4 => v4,
    }
}

/// Where an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Publicly routable.
    Public,
    /// Loopback, private, link-local (the metadata address 169.254.169.254
    /// among them), CGNAT, unique-local, multicast or reserved: reached only
    /// when named.
    Inward(&'static str),
    /// `0.0.0.0` or `::`: never reached.
    Never,
}

/// Classify `addr` (after [`canonical`]).
pub fn reach(addr: IpAddr) -> Reach {
    match canonical(addr) {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            if ip.is_unspecified() {
                Reach::Never
            } else if ip.is_loopback() {
                Reach::Inward("loopback")
            } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
                Reach::Inward("cloud metadata")
            } else if ip.is_link_local() {
                Reach::Inward("link-local")
            } else if ip.is_private() {
                Reach::Inward("private")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Reach::Inward("shared (CGNAT)")
            } else if o[0] == 0
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
            {
                Reach::Inward("reserved")
            } else if ip.is_multicast() || ip.is_broadcast() {
                Reach::Inward("multicast")
            } else {
                Reach::Public
            }
        }
        IpAddr::V6(ip) => {
            let s0 = ip.segments()[0];
            if ip.is_unspecified() {
                Reach::Never
            } else if ip.is_loopback() {
                Reach::Inward("loopback")
            } else if (s0 & 0xfe00) == 0xfc00 {
                Reach::Inward("unique-local")
            } else if (s0 & 0xffc0) == 0xfe80 || (s0 & 0xffc0) == 0xfec0 {
                Reach::Inward("link-local")
            } else if ip.is_multicast() {
                Reach::Inward("multicast")
            } else if (s0 & 0xe000) != 0x2000 {
                // Everything outside 2000::/3 is not global unicast.
                Reach::Inward("reserved")
            } else {
                Reach::Public
            }
        }
    }
}

/// What a task (or a worker) may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Origin patterns; empty: nothing.
    pub allow: Vec<OriginPattern>,
    /// Inward networks a granted name may resolve to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_networks: Vec<Network>,
}

/// Why the gate refuses a request, said to the guest and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No pattern allows the origin.
    Origin,
    /// The name resolved (or the literal is) to an address the grant does
    /// not name.
    Address(IpAddr, &'static str),
}

impl Grant {
    /// True if nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// The patterns that allow `origin`.
    fn matching<'a>(&'a self, origin: &'a Origin) -> impl Iterator<Item = &'a OriginPattern> + 'a {
        self.allow.iter().filter(move |p| p.matches(origin))
    }

    /// Whether `origin` is allowed before its name is resolved.
    pub fn check_origin(&self, origin: &Origin) -> Result<(), Refusal> {
        match self.matching(origin).next() {
            Some(_) => Ok(()),
            None => Err(Refusal::Origin),
        }
    }

    /// Whether `addr`, which `origin`'s host resolved to (or is), may be
    /// connected to.
    pub fn check_address(&self, origin: &Origin, addr: IpAddr) -> Result<(), Refusal> {
        match reach(addr) {
            Reach::Public => self.check_origin(origin),
            Reach::Never => Err(Refusal::Address(addr, "unspecified")),
            Reach::Inward(kind) => {
                let named = self.matching(origin).any(|p| p.names(addr));
                let in_network =
                    self.check_origin(origin).is_ok() && self.allow_networks.iter().any(|n| n.contains(addr));
                if named || in_network { Ok(()) } else { Err(Refusal::Address(addr, kind)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::of_uri(&s.parse().unwrap()).unwrap()
    }
    fn grant(allow: &[&str]) -> Grant {
        Grant { allow: allow.iter().map(|p| OriginPattern::parse(p).unwrap()).collect(), allow_networks: vec![] }
    }

    #[test]
    fn patterns_match_spins_syntax() {
        let g = grant(&["https://api.example.com", "https://*.example.org:8443", "http://*:*"]);
        assert!(g.check_origin(&origin("https://api.example.com/v1?x=1")).is_ok());
        assert!(g.check_origin(&origin("https://api.example.com:443/")).is_ok());
        assert!(g.check_origin(&origin("https://API.Example.COM/")).is_ok());
        assert_eq!(g.check_origin(&origin("https://api.example.com:444/")), Err(Refusal::Origin));
        assert_eq!(g.check_origin(&origin("https://evil.com/")), Err(Refusal::Origin));
        assert!(g.check_origin(&origin("https://a.b.example.org:8443/")).is_ok());
        assert_eq!(g.check_origin(&origin("https://example.org:8443/")), Err(Refusal::Origin));
        assert_eq!(g.check_origin(&origin("https://badexample.org:8443/")), Err(Refusal::Origin));
        assert!(g.check_origin(&origin("http://anything.test:81/")).is_ok());
        // `*` never matches an IP literal.
        assert_eq!(g.check_origin(&origin("http://10.0.0.1/")), Err(Refusal::Origin));
        // A port past 65535 is not silently the default one.
        assert!(Origin::of_uri(&"http://127.0.0.1:65536/".parse().unwrap()).is_err());
        assert!(Origin::of_uri(&"http://a.com:0/".parse().unwrap()).is_err());
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (p, why) in [
            ("api.example.com", "no scheme"),
            ("ftp://x.com", "scheme"),
            ("https://x.com/v1", "path"),
            ("https://user@x.com", "user information"),
            ("https://x.com:0", "port"),
            ("https://a*.com", "first label"),
            ("https://*.10.0.0.1", "wildcard cannot stand before an IP"),
            ("https://0.0.0.0", "unspecified"),
            ("http://[::ffff:0.0.0.0]", "unspecified"),
            ("http://x.com:+80", "port"),
        ] {
            let e = OriginPattern::parse(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn inward_addresses_need_naming() {
        let star = grant(&["http://*:*"]);
        let o = origin("http://rebind.example.com:8080/");
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
            "100.64.0.1",
            "0.0.0.0",
            "64:ff9b::7f00:1",
        ] {
            assert!(star.check_address(&o, a.parse().unwrap()).is_err(), "{a}");
        }
        assert!(star.check_address(&o, "93.184.216.34".parse().unwrap()).is_ok());
        let named = grant(&["http://127.0.0.1:8080", "http://localhost:8080", "http://169.254.169.254"]);
        assert!(named.check_address(&origin("http://127.0.0.1:8080/"), "127.0.0.1".parse().unwrap()).is_ok());
        assert!(named.check_address(&origin("http://localhost:8080/"), "::1".parse().unwrap()).is_ok());
        assert!(named.check_address(&origin("http://localhost:8080/"), "10.0.0.1".parse().unwrap()).is_err());
        assert!(named.check_address(&origin("http://169.254.169.254/"), "169.254.169.254".parse().unwrap()).is_ok());
        let mut net = grant(&["https://svc.internal"]);
        net.allow_networks.push(Network::parse("10.0.0.0/8").unwrap());
        assert!(net.check_address(&origin("https://svc.internal/"), "10.9.9.9".parse().unwrap()).is_ok());
        assert!(net.check_address(&origin("https://svc.internal/"), "192.168.1.1".parse().unwrap()).is_err());
    }
}
