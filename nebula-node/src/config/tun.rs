//! The `tun` section: device name, MTU, queue length, `tun.routes` (per-route MTU inside the VPN
//! networks) and `tun.unsafe_routes` (routes to non-nebula networks via gateways), as
//! `overlay/route.go` and `overlay/tun_linux.go` @ v1.11.1 read them.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::error::ConfigError;
use super::read::{atoi, int_in_range, shown, value_int, Reader};
use super::value::Value;

/// Go's `overlay.DefaultMTU`.
pub const DEFAULT_MTU: u32 = 1300;
/// Go's default `tun.tx_queue`.
pub const DEFAULT_TX_QUEUE: u32 = 500;
/// Smallest route MTU Go accepts in `tun.routes` / `tun.unsafe_routes`.
pub const MIN_ROUTE_MTU: u32 = 500;
/// The largest `tun.use_system_route_table_buffer_size` (64 MiB): a route-change socket needs
/// far less; more is a typo that would pin kernel memory.
pub const MAX_ROUTE_WATCH_BUFFER: i64 = 64 << 20;

/// One `tun.routes` entry: traffic to `route` (inside our VPN networks) uses `mtu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunRouteConfig {
    /// The destination CIDR.
    pub route: IpNet,
    /// Its MTU (required, ≥ 500).
    pub mtu: u32,
}

/// One gateway of an unsafe route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    /// The nebula host (VPN address) that forwards the traffic.
    pub addr: IpAddr,
    /// ECMP weight, 1..=i32::MAX (1 for the single-string form).
    pub weight: u32,
}

/// One `tun.unsafe_routes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeRouteConfig {
    /// The destination CIDR (must not be inside our VPN networks).
    pub route: IpNet,
    /// `via`: one gateway (string form) or several (`[{gateway, weight}]`, 1.10+).
    pub via: Vec<Gateway>,
    /// `mtu`: `None` = use `tun.mtu`.
    pub mtu: Option<u32>,
    /// `metric` (0 = none).
    pub metric: u32,
    /// `install` (true): whether to put the route in the system table.
    pub install: bool,
}

/// The `tun` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// `tun.disabled` (false): run without a TUN device (a lighthouse without root).
    pub disabled: bool,
    /// `tun.dev` (""): device name; empty = the kernel picks `tun%d`.
    pub dev: String,
    /// `tun.mtu` (1300): the default MTU, used for the VPN network routes.
    pub mtu: u32,
    /// `tun.tx_queue` (500): the device's txqueuelen.
    pub tx_queue: u32,
    /// `tun.routes`.
    pub routes: Vec<TunRouteConfig>,
    /// `tun.unsafe_routes`.
    pub unsafe_routes: Vec<UnsafeRouteConfig>,
    /// `tun.use_system_route_table` (false): follow the kernel's routes through our device whose
    /// gateway is a vpn address, as unsafe routes (see `crate::route_watch`).
    pub use_system_route_table: bool,
    /// `tun.use_system_route_table_buffer_size` (0 = the kernel's default, at most 64 MiB): the
    /// receive buffer of the route-change socket, forced (`SO_RCVBUFFORCE`) when set.
    pub use_system_route_table_buffer_size: u32,
    /// `tun.drop_local_broadcast` (false).
    pub drop_local_broadcast: bool,
    /// `tun.drop_multicast` (false).
    pub drop_multicast: bool,
    /// `tun.use_offloads` (true, as upstream master names it): open the device with
    /// `IFF_VNET_HDR` and enable checksum/segmentation offloads.
    pub use_offloads: bool,
}

/// A route the node puts in the system table for the TUN device (see [`TunConfig::system_routes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemRoute {
    /// Destination.
    pub dst: IpNet,
    /// Route MTU.
    pub mtu: u32,
    /// Metric / priority (0 = kernel default).
    pub metric: u32,
}

impl TunConfig {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<TunConfig, ConfigError> {
        let dev = r.string("tun.dev", "")?;
        if dev.len() > 15 || dev.contains(['/', ' ', '\0']) {
            return Err(ConfigError::invalid(
                "tun.dev",
                format!(
                    "{dev:?} is not a valid interface name (at most 15 bytes, no '/' or spaces)"
                ),
            ));
        }
        Ok(TunConfig {
            disabled: r.bool("tun.disabled", false)?,
            dev,
            mtu: r.int_in("tun.mtu", DEFAULT_MTU, 68, 65535)?,
            tx_queue: r.int_in("tun.tx_queue", DEFAULT_TX_QUEUE, 0, i32::MAX as i64)?,
            routes: parse_routes(r)?,
            unsafe_routes: parse_unsafe_routes(r)?,
            use_system_route_table: r.bool("tun.use_system_route_table", false)?,
            use_system_route_table_buffer_size: r.int_in(
                "tun.use_system_route_table_buffer_size",
                0,
                0,
                MAX_ROUTE_WATCH_BUFFER,
            )?,
            drop_local_broadcast: r.bool("tun.drop_local_broadcast", false)?,
            drop_multicast: r.bool("tun.drop_multicast", false)?,
            use_offloads: r.bool("tun.use_offloads", true)?,
        })
    }

    /// The routes to install on the device, in Go's order: every `tun.routes` entry, then every
    /// `tun.unsafe_routes` entry with `install: true` (MTU defaulting to `tun.mtu`).
    pub fn system_routes(&self) -> Vec<SystemRoute> {
        let plain = self.routes.iter().map(|r| SystemRoute {
            dst: r.route,
            mtu: r.mtu,
            metric: 0,
        });
        let unsafe_ = self
            .unsafe_routes
            .iter()
            .filter(|r| r.install)
            .map(|r| SystemRoute {
                dst: r.route,
                mtu: r.mtu.unwrap_or(self.mtu),
                metric: r.metric,
            });
        plain.chain(unsafe_).collect()
    }

    /// The device MTU: the largest of `tun.mtu` and every route MTU.
    pub fn max_mtu(&self) -> u32 {
        self.system_routes()
            .iter()
            .map(|r| r.mtu)
            .chain(std::iter::once(self.mtu))
            .max()
            .unwrap_or(self.mtu)
    }

    /// Go's checks that need the certificate's VPN networks: every `tun.routes` entry must lie
    /// inside one of them, and no `tun.unsafe_routes` entry may start inside one.
    pub fn check_networks(&self, networks: &[IpNet]) -> Result<(), ConfigError> {
        for (i, r) in self.routes.iter().enumerate() {
            let inside = networks
                .iter()
                .any(|n| n.contains(&r.route.addr()) && r.route.prefix_len() >= n.prefix_len());
            if !inside {
                return Err(ConfigError::invalid(
                    format!("tun.routes[{i}].route"),
                    format!(
                        "{} is not contained within the configured vpn networks {}",
                        r.route,
                        show_nets(networks)
                    ),
                ));
            }
        }
        for (i, r) in self.unsafe_routes.iter().enumerate() {
            if let Some(n) = networks.iter().find(|n| n.contains(&r.route.addr())) {
                return Err(ConfigError::invalid(
                    format!("tun.unsafe_routes[{i}].route"),
                    format!(
                        "{} is contained within the configured vpn network {n}",
                        r.route
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn show_nets(networks: &[IpNet]) -> String {
    let v: Vec<String> = networks.iter().map(|n| n.to_string()).collect();
    format!("[{}]", v.join(" "))
}

fn entry_map<'v>(key: &str, v: &'v Value) -> Result<&'v super::value::Map, ConfigError> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(ConfigError::invalid(
            key,
            format!("expected a map, got {} {}", other.kind_name(), shown(other)),
        )),
    }
}

fn parse_cidr(key: &str, v: &Value) -> Result<IpNet, ConfigError> {
    let text = v.go_string();
    IpNet::from_str(&text)
        .map_err(|_| ConfigError::invalid(key, format!("{} is not a CIDR", shown(v))))
}

fn parse_routes(r: &Reader<'_>) -> Result<Vec<TunRouteConfig>, ConfigError> {
    let Some(items) = r.list("tun.routes")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("tun.routes[{i}]");
        let m = entry_map(&key, item)?;
        let mtu = match m.get("mtu") {
            None | Some(Value::Null) => {
                return Err(ConfigError::invalid(format!("{key}.mtu"), "is not present"))
            }
            Some(v) => route_mtu(&format!("{key}.mtu"), v, false)?,
        };
        let route = match m.get("route") {
            None | Some(Value::Null) => {
                return Err(ConfigError::invalid(
                    format!("{key}.route"),
                    "is not present",
                ))
            }
            Some(v) => parse_cidr(&format!("{key}.route"), v)?,
        };
        out.push(TunRouteConfig { route, mtu });
    }
    Ok(out)
}

fn route_mtu(key: &str, v: &Value, zero_ok: bool) -> Result<u32, ConfigError> {
    let n = value_int(key, v)?;
    if zero_ok && n == 0 {
        return Ok(0);
    }
    if n < i64::from(MIN_ROUTE_MTU) {
        return Err(ConfigError::invalid(
            key,
            format!("{n} is below {MIN_ROUTE_MTU}"),
        ));
    }
    int_in_range(key, v, i64::from(MIN_ROUTE_MTU), 65535)
}

fn parse_unsafe_routes(r: &Reader<'_>) -> Result<Vec<UnsafeRouteConfig>, ConfigError> {
    let Some(items) = r.list("tun.unsafe_routes")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("tun.unsafe_routes[{i}]");
        let m = entry_map(&key, item)?;
        let mtu = match m.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => match route_mtu(&format!("{key}.mtu"), v, true)? {
                0 => None,
                n => Some(n),
            },
        };
        let metric = match m.get("metric") {
            None | Some(Value::Null) => 0,
            Some(v) => int_in_range(&format!("{key}.metric"), v, 0, i32::MAX as i64)?,
        };
        let via = match m.get("via") {
            None | Some(Value::Null) => {
                return Err(ConfigError::invalid(format!("{key}.via"), "is not present"))
            }
            Some(Value::String(s)) => vec![Gateway {
                addr: parse_gateway(&format!("{key}.via"), s)?,
                weight: 1,
            }],
            Some(Value::List(gws)) => {
                let mut v = Vec::with_capacity(gws.len());
                for (g, gw) in gws.iter().enumerate() {
                    let gkey = format!("{key}.via[{g}]");
                    let gm = entry_map(&gkey, gw)?;
                    let addr = match gm.get("gateway") {
                        Some(Value::String(s)) => parse_gateway(&format!("{gkey}.gateway"), s)?,
                        None | Some(Value::Null) => {
                            return Err(ConfigError::invalid(
                                format!("{gkey}.gateway"),
                                "is not present",
                            ))
                        }
                        Some(other) => {
                            return Err(ConfigError::invalid(
                                format!("{gkey}.gateway"),
                                format!("expected a string, got {}", other.kind_name()),
                            ))
                        }
                    };
                    let weight = match gm.get("weight") {
                        None | Some(Value::Null) => 1,
                        Some(w) => int_in_range(&format!("{gkey}.weight"), w, 1, i32::MAX as i64)?,
                    };
                    v.push(Gateway { addr, weight });
                }
                if v.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{key}.via"),
                        "is an empty list",
                    ));
                }
                v
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    format!("{key}.via"),
                    format!(
                        "is not a string or list of gateways: found {}",
                        other.kind_name()
                    ),
                ))
            }
        };
        let route = match m.get("route") {
            None | Some(Value::Null) => {
                return Err(ConfigError::invalid(
                    format!("{key}.route"),
                    "is not present",
                ))
            }
            Some(v) => parse_cidr(&format!("{key}.route"), v)?,
        };
        let install = match m.get("install") {
            None => true,
            Some(v) => goflag::parse_bool(&v.go_string()).map_err(|_| {
                ConfigError::invalid(
                    format!("{key}.install"),
                    format!("expected a boolean, got {}", shown(v)),
                )
            })?,
        };
        out.push(UnsafeRouteConfig {
            route,
            via,
            mtu,
            metric,
            install,
        });
    }
    Ok(out)
}

fn parse_gateway(key: &str, s: &str) -> Result<IpAddr, ConfigError> {
    IpAddr::from_str(s).map_err(|_| {
        let hint = if atoi(s).is_some() {
            " (a number?)"
        } else {
            ""
        };
        ConfigError::invalid(key, format!("{s:?} is not an IP address{hint}"))
    })
}
