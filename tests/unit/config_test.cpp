#include "control/config/config.hpp"

#include "control/esp/spi.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sdwan::cp {
namespace {

// The base config every broken case edits. Line numbers in the expected messages refer to it:
//  1 name   3 lan   6 uplinks   7 isp1   11 isp2   16 peers   17 hub   19/21 endpoints   22 prefixes
//  23 key_file
constexpr const char* kHead =
    "name: branch1\n"
    "role: edge\n"
    "lan:\n"
    "  port: af_packet:lan0\n"
    "  address: 192.168.10.1/24\n";
constexpr const char* kUplinks =
    "uplinks:\n"
    "  - name: isp1\n"
    "    port: af_packet:wan1\n"
    "    address: 10.1.0.2/24\n"
    "    next_hop: 10.1.0.1\n"
    "  - name: isp2\n"
    "    port: af_packet:wan2\n"
    "    address: 10.2.0.2/24\n"
    "    next_hop: 10.2.0.1\n"
    "    cost: metered\n";
constexpr const char* kPeers =
    "peers:\n"
    "  - name: hub\n"
    "    endpoints:\n"
    "      - address: 10.1.1.2\n"
    "        uplinks: [isp1]\n"
    "      - address: 10.2.1.2\n"
    "    prefixes: [192.168.20.0/24]\n"
    "    key_file: /etc/sdwan/master.key\n";

std::string base() { return std::string(kHead) + kUplinks + kPeers; }

// Replaces the one occurrence of `from` in `text`; an edit that matches nothing or twice
// would silently test something else, so it throws (gtest reports it as a failure).
std::string edit(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  if (at == std::string::npos || text.find(from, at + 1) != std::string::npos)
    throw std::logic_error("edit target not found exactly once: " + from);
  return text.replace(at, from.size(), to);
}

std::string edit(const std::string& from, const std::string& to) { return edit(base(), from, to); }

// Lines appended to the base start at line 24.
std::string append(const std::string& more) { return base() + more; }

std::string endpoints(int n) {
  std::string s = "    endpoints:\n";
  for (int i = 0; i < n; ++i) s += "      - address: 10.9.0." + std::to_string(i + 1) + "\n";
  return s;
}

std::string five_uplinks() {
  std::string s = "uplinks:\n";
  for (int i = 1; i <= 5; ++i) {
    const std::string n = std::to_string(i);
    s += "  - name: isp" + n + "\n    port: af_packet:wan" + n + "\n    address: 10." + n +
         ".0.2/24\n    next_hop: 10." + n + ".0.1\n";
  }
  return s;
}

constexpr const char* kSecondPeer =
    "  - name: dc2\n"
    "    endpoints:\n"
    "      - address: 10.5.1.2\n"
    "    prefixes: [192.168.30.0/24, 192.168.20.0/24]\n"
    "    key_file: /etc/sdwan/dc2.key\n";

struct Broken {
  const char* name;
  std::string yaml;
  std::string expected;
};

TEST(Config, BaseIsValid) {
  auto r = parse_config(base(), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
}

TEST(Config, RejectsEachMistakeWithFileLineKeyAndExpectation) {
  const std::string top_keys =
      "name, role, lan, uplinks, peers, lcores, idle, overlay_port, flow_capacity, icmp_errors_per_sec, log_level, "
      "dpdk, mgmt, metrics, esp, paths, classes, policy, events, host, apps";
  const std::string name_rule = "characters a-z, 0-9, '_' or '-'";
  const std::string unicast = "a unicast IPv4 address (not 0.0.0.0/8, 127.0.0.0/8, multicast or reserved)";
  const std::vector<Broken> cases = {
      // Document shape
      {"syntax error", edit("  port: af_packet:lan0", "  port: [af_packet:lan0"),
       "edge.yaml:5: invalid YAML: end of sequence flow not found"},
      {"two documents", append("---\nrole: hub\n"), "edge.yaml:25: expected one YAML document, got a second one"},
      {"top level is not a mapping", "just some text\n",
       "edge.yaml:1: expected a mapping with keys " + top_keys + ", got \"just some text\""},
      {"empty file", "", "edge.yaml:1: role: required key is missing"},
      {"unknown top-level key", edit("peers:", "peer:"),
       "edge.yaml:16: peer: unknown key (expected one of: " + top_keys + ")"},
      {"duplicate key", edit("  address: 192.168.10.1/24\n", "  address: 192.168.10.1/24\n  port: af_packet:lan1\n"),
       "edge.yaml:6: lan.port: duplicate key (first on line 4)"},
      // name, role
      {"role missing", edit("role: edge\n", ""), "edge.yaml:1: role: required key is missing"},
      {"role unknown", edit("role: edge", "role: spoke"), "edge.yaml:2: role: expected edge or hub, got \"spoke\""},
      {"name with capitals", edit("name: branch1", "name: Branch1"),
       "edge.yaml:1: name: expected a name of 1 to 32 " + name_rule + ", got \"Branch1\""},
      {"name with a newline stays on one line", edit("name: branch1", "name: \"a\\nb\""),
       "edge.yaml:1: name: expected a name of 1 to 32 " + name_rule + ", got \"a\\nb\""},
      // lan
      {"lan missing", std::string("role: edge\n") + kUplinks + kPeers, "edge.yaml:1: lan: required key is missing"},
      {"lan not a mapping", edit("lan:\n  port: af_packet:lan0\n  address: 192.168.10.1/24\n", "lan: af_packet:lan0\n"),
       "edge.yaml:3: lan: expected a mapping with keys port, address, mtu, got \"af_packet:lan0\""},
      {"lan empty", edit("lan:\n  port: af_packet:lan0\n  address: 192.168.10.1/24\n", "lan:\n"),
       "edge.yaml:3: lan.port: required key is missing"},
      {"lan port missing", edit("  port: af_packet:lan0\n", ""), "edge.yaml:4: lan.port: required key is missing"},
      {"lan port unknown kind", edit("af_packet:lan0", "virtio:0"),
       "edge.yaml:4: lan.port: port spec \"virtio:0\": unknown port kind \"virtio\" (expected pci:DOMAIN:BUS:DEV.FN, "
       "af_packet:IFACE, af_xdp:IFACE, tap, tap:NAME, ring:NAME or null)"},
      {"lan port empty", edit("  port: af_packet:lan0", "  port:"),
       "edge.yaml:4: lan.port: expected a port spec like af_packet:eth1, got nothing"},
      {"lan port tilde", edit("  port: af_packet:lan0", "  port: ~"),
       "edge.yaml:4: lan.port: expected a port spec like af_packet:eth1, got nothing"},
      {"lan port is a list", edit("  port: af_packet:lan0", "  port: [af_packet:lan0]"),
       "edge.yaml:4: lan.port: expected a port spec like af_packet:eth1, got a list"},
      {"lan address without length", edit("192.168.10.1/24", "192.168.10.1"),
       "edge.yaml:5: lan.address: expected an IPv4 address with prefix length like 192.168.10.1/24, got "
       "\"192.168.10.1\""},
      {"lan address is the network", edit("192.168.10.1/24", "192.168.10.0/24"),
       "edge.yaml:5: lan.address: expected a host address inside 192.168.10.0/24, got its network address "
       "\"192.168.10.0/24\""},
      {"lan address /32", edit("192.168.10.1/24", "192.168.10.1/32"),
       "edge.yaml:5: lan.address: expected a prefix length from /1 to /31 on an interface, got \"192.168.10.1/32\""},
      {"lan address loopback", edit("192.168.10.1/24", "127.0.0.1/8"),
       "edge.yaml:5: lan.address: expected " + unicast + ", got \"127.0.0.1/8\""},
      {"lan mtu too big", edit("  address: 192.168.10.1/24\n", "  address: 192.168.10.1/24\n  mtu: 9500\n"),
       "edge.yaml:6: lan.mtu: expected an MTU from 576 to 9000, got \"9500\""},
      {"lan mtu empty", edit("  address: 192.168.10.1/24\n", "  address: 192.168.10.1/24\n  mtu:\n"),
       "edge.yaml:6: lan.mtu: expected an MTU from 576 to 9000, got nothing"},
      // uplinks: the list
      {"uplinks missing", std::string(kHead) + kPeers, "edge.yaml:1: uplinks: required key is missing"},
      {"uplinks empty", std::string(kHead) + "uplinks: []\n" + kPeers,
       "edge.yaml:6: uplinks: expected 1 to 4 uplinks, got none"},
      {"uplinks not a list", std::string(kHead) + "uplinks: isp1\n" + kPeers,
       "edge.yaml:6: uplinks: expected a list of uplinks, got \"isp1\""},
      {"five uplinks", std::string(kHead) + five_uplinks() + kPeers,
       "edge.yaml:7: uplinks: expected 1 to 4 uplinks, got 5"},
      // uplinks: each entry
      {"uplink key typo", edit("    address: 10.1.0.2/24", "    adress: 10.1.0.2/24"),
       "edge.yaml:9: uplinks[0].adress: unknown key (expected one of: name, port, address, next_hop, cost, bandwidth, "
       "mtu)"},
      {"uplink name missing", edit("  - name: isp2\n    port: af_packet:wan2\n", "  - port: af_packet:wan2\n"),
       "edge.yaml:11: uplinks[1].name: required key is missing"},
      {"uplink name with capitals", edit("- name: isp1", "- name: ISP1"),
       "edge.yaml:7: uplinks[0].name: expected a name of 1 to 15 " + name_rule + ", got \"ISP1\""},
      {"uplink name too long", edit("- name: isp2", "- name: isp2-backup-line"),
       "edge.yaml:11: uplinks[1].name: expected a name of 1 to 15 " + name_rule + ", got \"isp2-backup-line\""},
      {"uplink name twice", edit("- name: isp2", "- name: isp1"),
       "edge.yaml:11: uplinks[1].name: expected a unique uplink name, got \"isp1\" (uplinks[0] has it)"},
      {"uplink port is the lan's", edit("af_packet:wan2", "af_packet:lan0"),
       "edge.yaml:12: uplinks[1].port: expected a device no other port uses, got \"af_packet:lan0\" (lan.port already "
       "uses it)"},
      {"uplink port same interface other kind", edit("af_packet:wan2", "af_xdp:wan1"),
       "edge.yaml:12: uplinks[1].port: expected a device no other port uses, got \"af_xdp:wan1\" (uplinks[0].port "
       "already uses it)"},
      {"uplink address invalid", edit("10.2.0.2/24", "10.0.0.300/24"),
       "edge.yaml:13: uplinks[1].address: expected an IPv4 address with prefix length like 10.1.0.2/24, got "
       "\"10.0.0.300/24\""},
      {"uplink subnet overlaps the lan", edit("10.2.0.2/24", "192.168.10.130/25"),
       "edge.yaml:13: uplinks[1].address: expected a subnet apart from the LAN subnet 192.168.10.0/24, got "
       "\"192.168.10.130/25\""},
      {"uplink subnet contains the lan", edit("10.2.0.2/24", "192.168.0.2/16"),
       "edge.yaml:13: uplinks[1].address: expected a subnet apart from the LAN subnet 192.168.10.0/24, got "
       "\"192.168.0.2/16\""},
      {"next hop missing", edit("    next_hop: 10.2.0.1\n", ""),
       "edge.yaml:11: uplinks[1].next_hop: required key is missing"},
      {"next hop not an address", edit("next_hop: 10.2.0.1", "next_hop: gateway"),
       "edge.yaml:14: uplinks[1].next_hop: expected an IPv4 address like 10.1.0.1, got \"gateway\""},
      {"next hop outside the subnet", edit("next_hop: 10.2.0.1", "next_hop: 10.9.0.1"),
       "edge.yaml:14: uplinks[1].next_hop: expected an address inside the uplink's subnet 10.2.0.0/24, got "
       "\"10.9.0.1\""},
      {"next hop is our own address", edit("next_hop: 10.2.0.1", "next_hop: 10.2.0.2"),
       "edge.yaml:14: uplinks[1].next_hop: expected the gateway's address, got the uplink's own address \"10.2.0.2\""},
      {"next hop is the broadcast address", edit("next_hop: 10.2.0.1", "next_hop: 10.2.0.255"),
       "edge.yaml:14: uplinks[1].next_hop: expected a host address inside 10.2.0.0/24, got its broadcast address "
       "\"10.2.0.255\""},
      {"cost unknown", edit("cost: metered", "cost: cheap"),
       "edge.yaml:15: uplinks[1].cost: expected normal or metered, got \"cheap\""},
      {"bandwidth in bytes", edit("    cost: metered\n", "    cost: metered\n    bandwidth: 100Mbps\n"),
       "edge.yaml:16: uplinks[1].bandwidth: expected a rate like 100Mbit (bit/s, or a number with unit bit, kbit, Mbit "
       "or "
       "Gbit), got \"100Mbps\""},
      {"uplink mtu too small", edit("    cost: metered\n", "    cost: metered\n    mtu: 500\n"),
       "edge.yaml:16: uplinks[1].mtu: expected an MTU from 576 to 9000, got \"500\""},
      // peers
      {"peers missing", std::string(kHead) + kUplinks, "edge.yaml:1: peers: required key is missing"},
      {"peers empty", std::string(kHead) + kUplinks + "peers: []\n",
       "edge.yaml:16: peers: expected 1 to 4096 peers, got none"},
      {"peer name twice", append(edit(kSecondPeer, "name: dc2", "name: hub")),
       "edge.yaml:24: peers[1].name: expected a unique peer name, got \"hub\" (peers[0] has it)"},
      {"peer key typo", edit("    prefixes:", "    prefix:"),
       "edge.yaml:22: peers[0].prefix: unknown key (expected one of: name, key_file, endpoints, prefixes)"},
      {"endpoints empty",
       edit("    endpoints:\n      - address: 10.1.1.2\n        uplinks: [isp1]\n      - address: 10.2.1.2\n",
            "    endpoints: []\n"),
       "edge.yaml:18: peers[0].endpoints: expected 1 to 16 endpoints, got none"},
      {"seventeen endpoints",
       edit("    endpoints:\n      - address: 10.1.1.2\n        uplinks: [isp1]\n      - address: 10.2.1.2\n",
            endpoints(17)),
       "edge.yaml:19: peers[0].endpoints: expected 1 to 16 endpoints, got 17"},
      {"too many paths",
       edit("    endpoints:\n      - address: 10.1.1.2\n        uplinks: [isp1]\n      - address: 10.2.1.2\n",
            endpoints(9)),
       "edge.yaml:19: peers[0].endpoints: expected at most 16 paths (endpoints x the uplinks that reach them), got 18"},
      {"endpoint address is a name", edit("address: 10.2.1.2", "address: hub.example.net"),
       "edge.yaml:21: peers[0].endpoints[1].address: expected an IPv4 address like 203.0.113.1, got "
       "\"hub.example.net\""},
      {"endpoint address multicast", edit("address: 10.2.1.2", "address: 239.1.1.1"),
       "edge.yaml:21: peers[0].endpoints[1].address: expected " + unicast + ", got \"239.1.1.1\""},
      {"endpoint port too big", edit("      - address: 10.2.1.2\n", "      - address: 10.2.1.2\n        port: 70000\n"),
       "edge.yaml:22: peers[0].endpoints[1].port: expected a UDP port from 0 to 65535, got \"70000\""},
      {"endpoint uplink unknown", edit("[isp1]", "[isp9]"),
       "edge.yaml:20: peers[0].endpoints[0].uplinks[0]: expected the name of a configured uplink (isp1 or isp2), got "
       "\"isp9\""},
      {"endpoint uplink twice", edit("[isp1]", "[isp1, isp1]"),
       "edge.yaml:20: peers[0].endpoints[0].uplinks[1]: expected each uplink once, got \"isp1\" twice"},
      {"endpoint uplinks empty", edit("[isp1]", "[]"),
       "edge.yaml:20: peers[0].endpoints[0].uplinks: expected 1 to 4 uplink names, got none"},
      {"endpoint twice", edit("address: 10.2.1.2", "address: 10.1.1.2\n        port: 4500"),
       "edge.yaml:21: peers[0].endpoints[1]: expected a distinct endpoint, got 10.1.1.2:4500 again (endpoints[0] has "
       "it)"},
      {"prefixes missing", edit("    prefixes: [192.168.20.0/24]\n", ""),
       "edge.yaml:17: peers[0].prefixes: required key is missing"},
      {"prefixes empty", edit("[192.168.20.0/24]", "[]"),
       "edge.yaml:22: peers[0].prefixes: expected a non-empty list of prefixes, got none"},
      {"prefixes not a list", edit("[192.168.20.0/24]", "192.168.20.0/24"),
       "edge.yaml:22: peers[0].prefixes: expected a list of prefixes, got \"192.168.20.0/24\""},
      {"prefix not a network", edit("[192.168.20.0/24]", "[192.168.20.0]"),
       "edge.yaml:22: peers[0].prefixes[0]: expected a network like 192.168.20.0/24, got \"192.168.20.0\""},
      {"prefix with host bits", edit("[192.168.20.0/24]", "[192.168.20.1/24]"),
       "edge.yaml:22: peers[0].prefixes[0]: expected a network with host bits zero (192.168.20.0/24), got "
       "\"192.168.20.1/24\""},
      {"prefix is the lan", edit("[192.168.20.0/24]", "[192.168.10.0/24]"),
       "edge.yaml:22: peers[0].prefixes[0]: expected a network outside the LAN subnet 192.168.10.0/24, got "
       "\"192.168.10.0/24\""},
      {"prefix inside the lan", edit("[192.168.20.0/24]", "[192.168.20.0/24, 192.168.10.128/25]"),
       "edge.yaml:22: peers[0].prefixes[1]: expected a network outside the LAN subnet 192.168.10.0/24, got "
       "\"192.168.10.128/25\""},
      {"prefix twice in a peer", edit("[192.168.20.0/24]", "[192.168.20.0/24, 192.168.20.0/24]"),
       "edge.yaml:22: peers[0].prefixes[1]: expected each prefix once, got \"192.168.20.0/24\" twice"},
      {"prefix on two peers", append(kSecondPeer),
       "edge.yaml:27: peers[1].prefixes[1]: expected a prefix no other peer has, got \"192.168.20.0/24\" (peers[0] "
       "\"hub\" has it)"},
      // lcores
      {"worker on the control core", append("lcores:\n  control: 1\n  workers: [1, 2]\n"),
       "edge.yaml:26: lcores.workers[0]: expected a core other than the control core 1, got \"1\""},
      {"worker twice", append("lcores:\n  workers: [1, 2, 1]\n"),
       "edge.yaml:25: lcores.workers[2]: expected each core once, got \"1\" twice"},
      {"workers empty", append("lcores:\n  workers: []\n"),
       "edge.yaml:25: lcores.workers: expected 1 to 64 core numbers, got none"},
      {"worker count disagrees", append("lcores:\n  workers: [1, 2]\n  worker_count: 3\n"),
       "edge.yaml:26: lcores.worker_count: expected 2 (the number of cores in lcores.workers) or no worker_count, got "
       "\"3\""},
      {"worker count zero", append("lcores:\n  worker_count: 0\n"),
       "edge.yaml:25: lcores.worker_count: expected an integer from 1 to 64, got \"0\""},
      {"control core out of range", append("lcores:\n  control: 5000\n"),
       "edge.yaml:25: lcores.control: expected a core number from 0 to 1023, got \"5000\""},
      // scalars at the top
      {"idle unknown", append("idle: spin\n"), "edge.yaml:24: idle: expected busy or adaptive, got \"spin\""},
      {"overlay port zero", append("overlay_port: 0\n"),
       "edge.yaml:24: overlay_port: expected a UDP port from 1 to 65535, got \"0\""},
      {"flow capacity too small", append("flow_capacity: 100\n"),
       "edge.yaml:24: flow_capacity: expected an integer from 1024 to 16777216, got \"100\""},
      {"icmp rate negative", append("icmp_errors_per_sec: -1\n"),
       "edge.yaml:24: icmp_errors_per_sec: expected an integer from 0 to 1000000, got \"-1\""},
      {"log level unknown", append("log_level: verbose\n"),
       "edge.yaml:24: log_level: expected error, warning, info or debug, got \"verbose\""},
      // dpdk, mgmt
      {"dpdk key typo", append("dpdk:\n  hugepage: false\n"),
       "edge.yaml:25: dpdk.hugepage: unknown key (expected one of: file_prefix, hugepages, memory_mb, extra_args)"},
      {"hugepages not a boolean", append("dpdk:\n  hugepages: maybe\n"),
       "edge.yaml:25: dpdk.hugepages: expected true or false, got \"maybe\""},
      {"file prefix with a slash", append("dpdk:\n  file_prefix: edge/1\n"),
       "edge.yaml:25: dpdk.file_prefix: expected a file prefix of 1 to 32 characters a-z, A-Z, 0-9, '_' or '-', got "
       "\"edge/1\""},
      {"memory too big", append("dpdk:\n  memory_mb: 2000000\n"),
       "edge.yaml:25: dpdk.memory_mb: expected an integer from 0 to 1048576, got \"2000000\""},
      {"extra args not a list", append("dpdk:\n  extra_args: --log-level=8\n"),
       "edge.yaml:25: dpdk.extra_args: expected a list of EAL arguments, got \"--log-level=8\""},
      {"socket relative", append("mgmt:\n  socket: sdwand.sock\n"),
       "edge.yaml:25: mgmt.socket: expected an absolute path of at most 107 bytes, got \"sdwand.sock\""},
      {"socket too long", append("mgmt:\n  socket: /" + std::string(107, 's') + "\n"),
       "edge.yaml:25: mgmt.socket: expected an absolute path of at most 107 bytes, got \"/" + std::string(56, 's') +
           "...\""},
      {"group with a space", append("mgmt:\n  group: \"sdwan ops\"\n"),
       "edge.yaml:25: mgmt.group: expected a group name (letters, digits, '_', '-' or '.', at most 32) or \"\", got "
       "\"sdwan ops\""},
      {"mgmt key typo", append("mgmt:\n  sock: /run/x.sock\n"),
       "edge.yaml:25: mgmt.sock: unknown key (expected one of: socket, group)"},
      // metrics
      {"metrics port too big", append("metrics:\n  port: 70000\n"),
       "edge.yaml:25: metrics.port: expected a TCP port from 0 to 65535 (0: off), got \"70000\""},
      {"metrics port not a number", append("metrics:\n  port: http\n"),
       "edge.yaml:25: metrics.port: expected a TCP port from 0 to 65535 (0: off), got \"http\""},
      {"metrics port 0 while enabled", append("metrics:\n  enabled: true\n  port: 0\n"),
       "edge.yaml:26: metrics.port: expected a TCP port from 1 to 65535 with enabled: true, got \"0\" (port 0 "
       "switches the endpoint off; write enabled: false instead)"},
      {"metrics address a host name", append("metrics:\n  address: localhost\n"),
       "edge.yaml:25: metrics.address: expected an IPv4 address of this host like 127.0.0.1, or 0.0.0.0 for every "
       "address, got \"localhost\""},
      {"metrics address multicast", append("metrics:\n  address: 239.1.2.3\n"),
       "edge.yaml:25: metrics.address: expected an IPv4 address of this host like 127.0.0.1, or 0.0.0.0 for every "
       "address, got \"239.1.2.3\""},
      {"metrics address with a port", append("metrics:\n  address: 127.0.0.1:9100\n"),
       "edge.yaml:25: metrics.address: expected an IPv4 address of this host like 127.0.0.1, or 0.0.0.0 for every "
       "address, got \"127.0.0.1:9100\""},
      {"metrics enabled not a boolean", append("metrics:\n  enabled: sometimes\n"),
       "edge.yaml:25: metrics.enabled: expected true or false, got \"sometimes\""},
      {"metrics key typo", append("metrics:\n  bind: 127.0.0.1\n"),
       "edge.yaml:25: metrics.bind: unknown key (expected one of: enabled, address, port)"},
      {"metrics not a mapping", append("metrics: 9469\n"),
       "edge.yaml:24: metrics: expected a mapping with keys enabled, address, port, got \"9469\""},
      // peers: master key
      {"key file missing", edit("    key_file: /etc/sdwan/master.key\n", ""),
       "edge.yaml:17: peers[0].key_file: required key is missing: the file with the peer's 256-bit master key, 64 hex "
       "digits, mode 0600 (docs/keys.md \"Key file\"); make one with: umask 077; openssl rand -hex 32 > "
       "/etc/sdwan/master.key"},
      {"key file relative", edit("key_file: /etc/sdwan/master.key", "key_file: master.key"),
       "edge.yaml:23: peers[0].key_file: expected an absolute path like /etc/sdwan/master.key, got \"master.key\""},
      {"key file empty", edit("key_file: /etc/sdwan/master.key", "key_file:"),
       "edge.yaml:23: peers[0].key_file: expected an absolute path like /etc/sdwan/master.key, got nothing"},
      // peers: link numbers
      {"link out of range", edit("        uplinks: [isp1]\n", "        uplinks: [isp1]\n        link: 4096\n"),
       "edge.yaml:21: peers[0].endpoints[0].link: expected a link number from 0 to 4095, got \"4096\""},
      {"link on an endpoint of two paths", edit("      - address: 10.2.1.2\n", "      - address: 10.2.1.2\n        link: 7\n"),
       "edge.yaml:22: peers[0].endpoints[1].link: expected link only on an endpoint with exactly one path (name its "
       "uplink: uplinks: [NAME]), got an endpoint reached over 2 uplinks"},
      {"computed links collide",
       edit("      - address: 10.2.1.2\n", "      - address: 10.2.34.208\n        uplinks: [isp2]\n"),
       "edge.yaml:21: peers[0].endpoints[1]: expected a link number no other path uses, got 412 for path isp2:hub "
       "(computed from its endpoints), the same as path isp1:hub (computed from its endpoints); set link: 0..4095 on "
       "the endpoint of one of them, and the same number on that path's endpoint in the peer's config (docs/keys.md)"},
      {"computed link collides with a set one",
       edit("        uplinks: [isp1]\n", "        uplinks: [isp1]\n        link: 3410\n"),
       "edge.yaml:22: peers[0].endpoints[1]: expected a link number no other path uses, got 3410 for path isp2:hub "
       "(computed from its endpoints), the same as path isp1:hub (set by link:); set link: 0..4095 on the endpoint of "
       "one of them, and the same number on that path's endpoint in the peer's config (docs/keys.md)"},
      {"set link collides with a computed one",
       edit("      - address: 10.2.1.2\n", "      - address: 10.2.1.2\n        uplinks: [isp2]\n        link: 412\n"),
       "edge.yaml:23: peers[0].endpoints[1].link: expected a link number no other path uses, got 412 for path isp2:hub "
       "(set by link:), the same as path isp1:hub (computed from its endpoints); set link: 0..4095 on the endpoint of "
       "one of them, and the same number on that path's endpoint in the peer's config (docs/keys.md)"},
      // esp
      {"esp key typo", append("esp:\n  window: 4096\n"),
       "edge.yaml:25: esp.window: unknown key (expected one of: esn, replay_window, keylog, epoch_store, lifetime)"},
      {"esp not a mapping", append("esp: on\n"),
       "edge.yaml:24: esp: expected a mapping with keys esn, replay_window, keylog, epoch_store, lifetime, got \"on\""},
      {"esn not a boolean", append("esp:\n  esn: 64\n"), "edge.yaml:25: esp.esn: expected true or false, got \"64\""},
      {"replay window not a power of two", append("esp:\n  replay_window: 3000\n"),
       "edge.yaml:25: esp.replay_window: expected a power of two from 1024 to 1048576 (packets), got \"3000\""},
      {"replay window too small", append("esp:\n  replay_window: 512\n"),
       "edge.yaml:25: esp.replay_window: expected a power of two from 1024 to 1048576 (packets), got \"512\""},
      {"replay window too big", append("esp:\n  replay_window: 2097152\n"),
       "edge.yaml:25: esp.replay_window: expected a power of two from 1024 to 1048576 (packets), got \"2097152\""},
      {"keylog relative", append("esp:\n  keylog: edge.keylog\n"),
       "edge.yaml:25: esp.keylog: expected an absolute path like /run/sdwan/edge.keylog, got \"edge.keylog\""},
      {"epoch store relative", append("esp:\n  epoch_store: ./edge.epochs\n"),
       "edge.yaml:25: esp.epoch_store: expected an absolute path like /var/lib/sdwan/edge.epochs, got "
       "\"./edge.epochs\""},
      {"lifetime key typo", append("esp:\n  lifetime:\n    pkts: 100\n"),
       "edge.yaml:26: esp.lifetime.pkts: unknown key (expected one of: packets, bytes, seconds, soft_percent, "
       "drain_ms)"},
      {"lifetime packets zero", append("esp:\n  lifetime:\n    packets: 0\n"),
       "edge.yaml:26: esp.lifetime.packets: sa lifetime: hard packets must be above 0"},
      {"lifetime bytes zero", append("esp:\n  lifetime:\n    bytes: 0\n"),
       "edge.yaml:26: esp.lifetime.bytes: sa lifetime: hard bytes must be above 0"},
      {"lifetime seconds beyond ten years", append("esp:\n  lifetime:\n    seconds: 400000000\n"),
       "edge.yaml:26: esp.lifetime.seconds: sa lifetime: hard seconds must be 1..316224000 (ten years), got 400000000"},
      {"lifetime soft percent 100", append("esp:\n  lifetime:\n    packets: 1000\n    soft_percent: 100\n"),
       "edge.yaml:27: esp.lifetime.soft_percent: sa lifetime: soft percent must be 1..99, got 100"},
      {"lifetime drain over an hour", append("esp:\n  lifetime:\n    drain_ms: 3600001\n"),
       "edge.yaml:26: esp.lifetime.drain_ms: sa lifetime: drain must be at most 3600000 ms, got 3600001"},
      {"lifetime negative", append("esp:\n  lifetime:\n    seconds: -5\n"),
       "edge.yaml:26: esp.lifetime.seconds: expected an integer from 0 to 18446744073709551615, got \"-5\""},
      // paths (probing, path state, statistics window)
      {"paths key typo", append("paths:\n  interval: 100\n"),
       "edge.yaml:25: paths.interval: unknown key (expected one of: probe_interval, multiplier, hold_up, window_s, "
       "damping)"},
      {"paths not a mapping", append("paths: fast\n"),
       "edge.yaml:24: paths: expected a mapping with keys probe_interval, multiplier, hold_up, window_s, damping, got "
       "\"fast\""},
      {"probe interval below 10 ms", append("paths:\n  probe_interval: 5\n"),
       "edge.yaml:25: paths.probe_interval: expected a probe interval in milliseconds from 10 to 10000 (an integer, "
       "\"ms\" optional), got \"5\""},
      {"probe interval above 10 s", append("paths:\n  probe_interval: 10001ms\n"),
       "edge.yaml:25: paths.probe_interval: expected a probe interval in milliseconds from 10 to 10000 (an integer, "
       "\"ms\" optional), got \"10001ms\""},
      {"probe interval in seconds", append("paths:\n  probe_interval: 1s\n"),
       "edge.yaml:25: paths.probe_interval: expected a probe interval in milliseconds from 10 to 10000 (an integer, "
       "\"ms\" optional), got \"1s\""},
      {"probe interval fraction", append("paths:\n  probe_interval: 12.5\n"),
       "edge.yaml:25: paths.probe_interval: expected a probe interval in milliseconds from 10 to 10000 (an integer, "
       "\"ms\" optional), got \"12.5\""},
      {"probe interval empty", append("paths:\n  probe_interval:\n"),
       "edge.yaml:25: paths.probe_interval: expected a probe interval in milliseconds from 10 to 10000 (an integer, "
       "\"ms\" optional), got nothing"},
      {"multiplier zero", append("paths:\n  multiplier: 0\n"),
       "edge.yaml:25: paths.multiplier: expected a number of probes from 1 to 255, got \"0\""},
      {"multiplier above 255", append("paths:\n  multiplier: 256\n"),
       "edge.yaml:25: paths.multiplier: expected a number of probes from 1 to 255, got \"256\""},
      {"hold_up zero", append("paths:\n  hold_up: 0\n"),
       "edge.yaml:25: paths.hold_up: expected a number of probes from 1 to 255, got \"0\""},
      {"window zero", append("paths:\n  window_s: 0\n"),
       "edge.yaml:25: paths.window_s: expected a number of seconds from 1 to 3600, got \"0\""},
      {"window over an hour", append("paths:\n  window_s: 3601\n"),
       "edge.yaml:25: paths.window_s: expected a number of seconds from 1 to 3600, got \"3601\""},
      {"window shorter than two intervals", append("paths:\n  probe_interval: 5000\n  window_s: 5\n"),
       "edge.yaml:26: paths.window_s: expected at least two probe intervals (10 s with probe_interval 5000 ms), got "
       "\"5\""},
      {"damping key typo", append("paths:\n  damping:\n    hold: 5\n"),
       "edge.yaml:26: paths.damping.hold: unknown key (expected one of: flaps, window_s, hold_min_ms, hold_max_ms, "
       "quiet_s)"},
      {"damping flaps above 16", append("paths:\n  damping:\n    flaps: 17\n"),
       "edge.yaml:26: paths.damping.flaps: expected a number of flaps (0: no damping) from 0 to 16, got \"17\""},
      {"damping window zero", append("paths:\n  damping:\n    window_s: 0\n"),
       "edge.yaml:26: paths.damping.window_s: expected a number of seconds from 1 to 86400, got \"0\""},
      {"damping hold min zero", append("paths:\n  damping:\n    hold_min_ms: 0\n"),
       "edge.yaml:26: paths.damping.hold_min_ms: expected a number of milliseconds from 1 to 3600000, got \"0\""},
      {"damping hold max over an hour", append("paths:\n  damping:\n    hold_max_ms: 3600001\n"),
       "edge.yaml:26: paths.damping.hold_max_ms: expected a number of milliseconds from 1 to 3600000, got "
       "\"3600001\""},
      {"damping quiet zero", append("paths:\n  damping:\n    quiet_s: 0\n"),
       "edge.yaml:26: paths.damping.quiet_s: expected a number of seconds from 1 to 86400, got \"0\""},
      {"damping hold max below hold min", append("paths:\n  damping:\n    hold_min_ms: 5000\n    hold_max_ms: 2000\n"),
       "edge.yaml:27: paths.damping.hold_max_ms: damping maximum hold (2 s) is below the minimum (5 s)"},
      {"damping hold min above the default max", append("paths:\n  damping:\n    hold_min_ms: 120000\n"),
       "edge.yaml:26: paths.damping: damping maximum hold (60 s) is below the minimum (120 s)"},
      // classes (issue 6)
      {"classes not a list", append("classes: voice\n"),
       "edge.yaml:24: classes: expected a list of classes, got \"voice\""},
      {"classes empty", append("classes: []\n"), "edge.yaml:24: classes: expected 1 to 64 classes, got none"},
      {"class key typo", append("classes:\n  - name: voice\n    matches: []\n"),
       "edge.yaml:26: classes[0].matches: unknown key (expected one of: name, default, match, sla, mode, adaptive, "
       "max_overhead_pct, reorder_max_ms, metered, fallback)"},
      {"class name missing", append("classes:\n  - mode: best\n    default: true\n"),
       "edge.yaml:25: classes[0].name: required key is missing"},
      {"class name with capitals", append("classes:\n  - name: Voice\n    default: true\n"),
       "edge.yaml:25: classes[0].name: expected a name of 1 to 32 " + name_rule + ", got \"Voice\""},
      {"class name twice",
       append("classes:\n  - name: voice\n    match: [{dport: 5004}]\n  - name: voice\n    default: true\n"),
       "edge.yaml:27: classes[1].name: expected a unique class name, got \"voice\" (classes[0] has it)"},
      {"two default classes",
       append("classes:\n  - name: bulk\n    default: true\n  - name: other\n    default: true\n"),
       "edge.yaml:28: classes[1].default: expected one default class, got a second one (classes[0] \"bulk\" is the "
       "default)"},
      {"default not a boolean", append("classes:\n  - name: bulk\n    default: maybe\n"),
       "edge.yaml:26: classes[0].default: expected true or false, got \"maybe\""},
      {"class named default that is not", append("classes:\n  - name: default\n    match: [{dport: 1}]\n"),
       "edge.yaml:25: classes[0].name: expected default: true on the class named \"default\" (the name is the "
       "default class's)"},
      {"default class with rules", append("classes:\n  - name: bulk\n    default: true\n    match: [{dport: 80}]\n"),
       "edge.yaml:27: classes[0].match: expected no match rules on the default class (it takes every packet no other "
       "class matches)"},
      {"class without rules", append("classes:\n  - name: voice\n    mode: best\n"),
       "edge.yaml:25: classes[0].match: required key is missing: a class needs match rules unless it is the default "
       "(default: true)"},
      {"match empty", append("classes:\n  - name: voice\n    match: []\n"),
       "edge.yaml:26: classes[0].match: expected 1 to 256 match rules, got none"},
      {"match rule empty", append("classes:\n  - name: voice\n    match:\n      - {}\n"),
       "edge.yaml:27: classes[0].match[0]: expected at least one of src, dst, proto, sport, dport, dscp, got an empty "
       "rule"},
      {"match key typo", append("classes:\n  - name: voice\n    match:\n      - port: 5004\n"),
       "edge.yaml:27: classes[0].match[0].port: unknown key (expected one of: src, dst, proto, sport, dport, dscp)"},
      {"match prefix with host bits", append("classes:\n  - name: voice\n    match:\n      - dst: 10.0.0.1/8\n"),
       "edge.yaml:27: classes[0].match[0].dst: expected a network with host bits zero (10.0.0.0/8), got "
       "\"10.0.0.1/8\""},
      {"match src not a prefix", append("classes:\n  - name: voice\n    match:\n      - src: lan\n"),
       "edge.yaml:27: classes[0].match[0].src: expected a network like 192.168.20.0/24, got \"lan\""},
      {"match proto unknown", append("classes:\n  - name: voice\n    match:\n      - proto: sctp\n"),
       "edge.yaml:27: classes[0].match[0].proto: expected udp, tcp, icmp or a protocol number from 1 to 255, got "
       "\"sctp\""},
      {"match proto zero", append("classes:\n  - name: voice\n    match:\n      - proto: 0\n"),
       "edge.yaml:27: classes[0].match[0].proto: expected udp, tcp, icmp or a protocol number from 1 to 255, got "
       "\"0\""},
      {"match port too big", append("classes:\n  - name: voice\n    match:\n      - dport: 70000\n"),
       "edge.yaml:27: classes[0].match[0].dport: expected a port like 5004 or a range like 5000-5010, from 0 to "
       "65535, got \"70000\""},
      {"match port range reversed", append("classes:\n  - name: voice\n    match:\n      - sport: 5010-5000\n"),
       "edge.yaml:27: classes[0].match[0].sport: expected a range with its low end first, got \"5010-5000\""},
      {"match port range open", append("classes:\n  - name: voice\n    match:\n      - dport: 5000-\n"),
       "edge.yaml:27: classes[0].match[0].dport: expected a port like 5004 or a range like 5000-5010, from 0 to "
       "65535, got \"5000-\""},
      {"match ports on icmp", append("classes:\n  - name: voice\n    match:\n      - proto: icmp\n        dport: 1\n"),
       "edge.yaml:28: classes[0].match[0].dport: expected ports only with proto tcp or udp (or no proto), got proto "
       "\"icmp\""},
      {"match dscp too big", append("classes:\n  - name: voice\n    match:\n      - dscp: 64\n"),
       "edge.yaml:27: classes[0].match[0].dscp: expected a DSCP value from 0 to 63 or a name like ef, af41, cs1, got "
       "\"64\""},
      {"match dscp unknown name", append("classes:\n  - name: voice\n    match:\n      - dscp: af44\n"),
       "edge.yaml:27: classes[0].match[0].dscp: expected a DSCP value from 0 to 63 or a name like ef, af41, cs1, got "
       "\"af44\""},
      {"sla key typo", append("classes:\n  - name: bulk\n    default: true\n    sla:\n      latency: 100\n"),
       "edge.yaml:28: classes[0].sla.latency: unknown key (expected one of: latency_ms, jitter_ms, loss_pct)"},
      {"sla latency zero", append("classes:\n  - name: bulk\n    default: true\n    sla:\n      latency_ms: 0\n"),
       "edge.yaml:28: classes[0].sla.latency_ms: expected a number of milliseconds from 1 to 10000, got \"0\""},
      {"sla jitter fraction", append("classes:\n  - name: bulk\n    default: true\n    sla:\n      jitter_ms: 2.5\n"),
       "edge.yaml:28: classes[0].sla.jitter_ms: expected a number of milliseconds from 1 to 10000, got \"2.5\""},
      {"sla loss above 100", append("classes:\n  - name: bulk\n    default: true\n    sla:\n      loss_pct: 101\n"),
       "edge.yaml:28: classes[0].sla.loss_pct: expected a percentage from 0 to 100 with at most three decimals, like "
       "1 or 0.5, got \"101\""},
      {"sla loss four decimals", append("classes:\n  - name: bulk\n    default: true\n    sla:\n      loss_pct: 0.0001\n"),
       "edge.yaml:28: classes[0].sla.loss_pct: expected a percentage from 0 to 100 with at most three decimals, like "
       "1 or 0.5, got \"0.0001\""},
      {"sla loss with a percent sign", append("classes:\n  - name: bulk\n    default: true\n    sla:\n      loss_pct: 1%\n"),
       "edge.yaml:28: classes[0].sla.loss_pct: expected a percentage from 0 to 100 with at most three decimals, like "
       "1 or 0.5, got \"1%\""},
      {"mode unknown", append("classes:\n  - name: bulk\n    default: true\n    mode: roundrobin\n"),
       "edge.yaml:27: classes[0].mode: expected best, balance, spray or duplicate, got \"roundrobin\""},
      {"adaptive without duplicate", append("classes:\n  - name: bulk\n    default: true\n    mode: balance\n    adaptive: true\n"),
       "edge.yaml:28: classes[0].adaptive: expected adaptive only with mode duplicate, got mode balance"},
      {"overhead without duplicate", append("classes:\n  - name: bulk\n    default: true\n    max_overhead_pct: 10\n"),
       "edge.yaml:27: classes[0].max_overhead_pct: expected max_overhead_pct only with mode duplicate, got mode best"},
      {"overhead zero", append("classes:\n  - name: bulk\n    default: true\n    mode: duplicate\n    max_overhead_pct: 0\n"),
       "edge.yaml:28: classes[0].max_overhead_pct: expected a percentage from 1 to 100, got \"0\""},
      {"reorder without spray", append("classes:\n  - name: bulk\n    default: true\n    reorder_max_ms: 20\n"),
       "edge.yaml:27: classes[0].reorder_max_ms: expected reorder_max_ms only with mode spray, got mode best"},
      {"reorder too long", append("classes:\n  - name: bulk\n    default: true\n    mode: spray\n    reorder_max_ms: 1001\n"),
       "edge.yaml:28: classes[0].reorder_max_ms: expected a number of milliseconds from 1 to 1000, got \"1001\""},
      {"metered unknown", append("classes:\n  - name: bulk\n    default: true\n    metered: prefer\n"),
       "edge.yaml:27: classes[0].metered: expected avoid, allow or never, got \"prefer\""},
      {"fallback unknown", append("classes:\n  - name: bulk\n    default: true\n    fallback: best\n"),
       "edge.yaml:27: classes[0].fallback: expected least_bad or drop, got \"best\""},
      // policy (hysteresis)
      {"policy key typo", append("policy:\n  margin_pct: 5\n"),
       "edge.yaml:25: policy.margin_pct: unknown key (expected one of: switch_margin_pct, switch_margin_ms, "
       "switch_hold_ms, failback_stable_ms)"},
      {"switch margin above 100", append("policy:\n  switch_margin_pct: 101\n"),
       "edge.yaml:25: policy.switch_margin_pct: expected a percentage from 0 to 100, got \"101\""},
      {"both switch margins", append("policy:\n  switch_margin_pct: 10\n  switch_margin_ms: 5\n"),
       "edge.yaml:26: policy.switch_margin_ms: expected switch_margin_pct or switch_margin_ms, not both"},
      {"switch hold too long", append("policy:\n  switch_hold_ms: 600001\n"),
       "edge.yaml:25: policy.switch_hold_ms: expected a number of milliseconds from 0 to 600000, got \"600001\""},
      {"failback negative", append("policy:\n  failback_stable_ms: -1\n"),
       "edge.yaml:25: policy.failback_stable_ms: expected a number of milliseconds from 0 to 3600000, got \"-1\""},
  };
  ASSERT_GE(cases.size(), 25u);
  for (const auto& c : cases) {
    auto r = parse_config(c.yaml, "edge.yaml");
    ASSERT_FALSE(r.ok()) << c.name << " parsed:\n" << c.yaml;
    EXPECT_EQ(r.error().msg, c.expected) << c.name;
    EXPECT_EQ(r.error().msg.find('\n'), std::string::npos) << c.name;
  }
}

TEST(Config, BaseParsesToItsValuesAndDefaults) {
  auto r = parse_config(base(), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  const Config& c = *r;
  EXPECT_EQ(c.file, "edge.yaml");
  EXPECT_EQ(c.name, "branch1");
  EXPECT_EQ(c.role, Role::kEdge);
  EXPECT_EQ(c.lan.port, "af_packet:lan0");
  EXPECT_EQ(c.lan.address, (Prefix4{Ipv4{0xc0a80a01}, 24}));  // host bits kept
  EXPECT_EQ(c.lan.mtu, 1500);
  ASSERT_EQ(c.uplinks.size(), 2u);
  EXPECT_EQ(c.uplinks[0].name, "isp1");
  EXPECT_EQ(c.uplinks[0].port, "af_packet:wan1");
  EXPECT_EQ(c.uplinks[0].address.str(), "10.1.0.2/24");
  EXPECT_EQ(c.uplinks[0].next_hop.str(), "10.1.0.1");
  EXPECT_EQ(c.uplinks[0].cost, CostTier::kNormal);
  EXPECT_EQ(c.uplinks[0].bandwidth_bps, 0u);
  EXPECT_EQ(c.uplinks[0].mtu, 1500);
  EXPECT_EQ(c.uplinks[1].cost, CostTier::kMetered);
  ASSERT_EQ(c.peers.size(), 1u);
  EXPECT_EQ(c.peers[0].name, "hub");
  ASSERT_EQ(c.peers[0].endpoints.size(), 2u);
  EXPECT_EQ(c.peers[0].endpoints[0].address.str(), "10.1.1.2");
  EXPECT_EQ(c.peers[0].endpoints[0].port, 0);
  EXPECT_EQ(c.peers[0].endpoints[0].uplinks, std::vector<std::string>{"isp1"});
  EXPECT_TRUE(c.peers[0].endpoints[1].uplinks.empty());
  ASSERT_EQ(c.peers[0].prefixes.size(), 1u);
  EXPECT_EQ(c.peers[0].prefixes[0].str(), "192.168.20.0/24");
  EXPECT_EQ(c.lcores.control, 0u);
  EXPECT_TRUE(c.lcores.workers.empty());
  EXPECT_EQ(c.lcores.worker_count, 1u);
  EXPECT_EQ(c.idle, dp::IdlePolicy::kAdaptive);
  EXPECT_EQ(c.overlay_port, 4500);
  EXPECT_EQ(c.flow_capacity, 65536u);
  EXPECT_EQ(c.icmp_errors_per_sec, 100u);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.dpdk.file_prefix, "branch1");
  EXPECT_TRUE(c.dpdk.hugepages);
  EXPECT_EQ(c.dpdk.memory_mb, 0u);
  EXPECT_TRUE(c.dpdk.extra_args.empty());
  EXPECT_EQ(c.mgmt.socket, "/run/sdwan/sdwand.sock");
  EXPECT_EQ(c.mgmt.group, "");
  EXPECT_TRUE(c.metrics.enabled);
  EXPECT_TRUE(c.metrics.on());
  EXPECT_EQ(c.metrics.address.str(), "127.0.0.1");
  EXPECT_EQ(c.metrics.port, 9469);
  EXPECT_EQ(c.peers[0].key_file, "/etc/sdwan/master.key");
  EXPECT_FALSE(c.peers[0].endpoints[0].link);
  EXPECT_TRUE(c.esp.esn);
  EXPECT_EQ(c.esp.replay_window, 4096u);
  EXPECT_EQ(c.esp.keylog, "");
  EXPECT_EQ(c.esp.epoch_store, "/var/lib/sdwan/branch1.epochs");
  EXPECT_EQ(c.esp.lifetime.hard, (SaLimits{uint64_t{1} << 31, uint64_t{1} << 40, 8 * 3600}));
  EXPECT_EQ(c.esp.lifetime.soft_percent, 90u);
  EXPECT_EQ(c.esp.lifetime.drain_ms, 10000u);
  EXPECT_EQ(c.paths.probe_interval_ms, 100u);
  EXPECT_EQ(c.paths.window_s, 10u);
  EXPECT_EQ(c.paths.state.interval_ns, 100'000'000u);
  EXPECT_EQ(c.paths.state.multiplier, 3u);
  EXPECT_EQ(c.paths.state.hold_up, 3u);
  EXPECT_EQ(c.paths.state.damping.flaps, 5u);
  EXPECT_EQ(c.paths.state.damping.window_ns, 60'000'000'000u);
  EXPECT_EQ(c.paths.state.damping.hold_min_ns, 1'000'000'000u);
  EXPECT_EQ(c.paths.state.damping.hold_max_ns, 60'000'000'000u);
  EXPECT_EQ(c.paths.state.damping.quiet_ns, 120'000'000'000u);
}

TEST(Config, PathsProbeIntervalTakesMillisecondsWithOrWithoutMs) {
  for (const char* v : {"250", "250ms", "\"250\""}) {
    auto r = parse_config(append(std::string("paths:\n  probe_interval: ") + v + "\n"), "edge.yaml");
    ASSERT_TRUE(r.ok()) << v << ": " << r.error().msg;
    EXPECT_EQ(r->paths.probe_interval_ms, 250u) << v;
    EXPECT_EQ(r->paths.state.interval_ns, 250'000'000u) << v;
  }
}

TEST(Config, PathsWindowDefaultGrowsToTwoProbeIntervals) {
  auto r = parse_config(append("paths:\n  probe_interval: 7500\n"), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->paths.window_s, 15u);
  auto empty = parse_config(append("paths:\n"), "edge.yaml");
  ASSERT_TRUE(empty.ok()) << empty.error().msg;
  EXPECT_EQ(empty->paths.probe_interval_ms, 100u);
  EXPECT_EQ(empty->paths.window_s, 10u);
}

TEST(Config, NameAndFilePrefixDefaultToTheRole) {
  auto r = parse_config(edit(edit("name: branch1\n", ""), "role: edge", "role: hub"), "hub.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->role, Role::kHub);
  EXPECT_EQ(r->name, "hub");
  EXPECT_EQ(r->dpdk.file_prefix, "hub");
}

// Port 0 or enabled: false switch the endpoint off; an empty section keeps the defaults.
TEST(Config, MetricsCanBeSwitchedOff) {
  const struct {
    const char* yaml;
    bool on;
  } cases[] = {
      {"metrics:\n  port: 0\n", false},
      {"metrics:\n  enabled: false\n", false},
      {"metrics:\n  enabled: false\n  port: 0\n", false},
      {"metrics:\n  enabled: off\n  port: 9100\n", false},
      {"metrics:\n", true},
      {"metrics:\n  address: 192.168.10.1\n", true},
  };
  for (const auto& c : cases) {
    auto r = parse_config(append(c.yaml), "edge.yaml");
    ASSERT_TRUE(r.ok()) << c.yaml << ": " << r.error().msg;
    EXPECT_EQ(r->metrics.on(), c.on) << c.yaml;
  }
}

TEST(Config, EveryOptionalKeyIsRead) {
  const std::string more =
      "lcores:\n"
      "  control: 2\n"
      "  workers: [3, 5]\n"
      "  worker_count: 2\n"
      "idle: busy\n"
      "overlay_port: 4600\n"
      "flow_capacity: 1024\n"
      "icmp_errors_per_sec: 0\n"
      "log_level: debug\n"
      "dpdk:\n"
      "  file_prefix: Edge_1\n"
      "  hugepages: no\n"
      "  memory_mb: 512\n"
      "  extra_args: [--log-level=lib.eal:8, --no-telemetry]\n"
      "mgmt:\n"
      "  socket: /tmp/s.sock\n"
      "  group: sdwan\n"
      "metrics:\n"
      "  enabled: yes\n"
      "  address: 0.0.0.0\n"
      "  port: 9100\n"
      "esp:\n"
      "  esn: false\n"
      "  replay_window: 1048576\n"
      "  keylog: /run/sdwan/edge.keylog\n"
      "  epoch_store: /srv/edge.epochs\n"
      "  lifetime:\n"
      "    packets: 1000000\n"
      "    bytes: 5000000000\n"
      "    seconds: 600\n"
      "    soft_percent: 50\n"
      "    drain_ms: 2000\n"
      "paths:\n"
      "  probe_interval: 20\n"
      "  multiplier: 5\n"
      "  hold_up: 7\n"
      "  window_s: 30\n"
      "  damping:\n"
      "    flaps: 0\n"
      "    window_s: 90\n"
      "    hold_min_ms: 500\n"
      "    hold_max_ms: 8000\n"
      "    quiet_s: 300\n";
  std::string yaml = edit("  address: 192.168.10.1/24\n", "  address: 192.168.10.1/24\n  mtu: 9000\n");
  yaml = edit(yaml, "    cost: metered\n", "    cost: metered\n    bandwidth: 2.5Gbit\n    mtu: 1400\n");
  yaml = edit(yaml, "      - address: 10.2.1.2\n",
              "      - address: 10.2.1.2\n        port: 4501\n        uplinks: [isp2, isp1]\n");
  yaml = edit(yaml, "        uplinks: [isp1]\n", "        uplinks: [isp1]\n        link: 4095\n");
  auto r = parse_config(yaml + more, "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  const Config& c = *r;
  EXPECT_EQ(c.lan.mtu, 9000);
  EXPECT_EQ(c.uplinks[1].bandwidth_bps, 2500000000u);
  EXPECT_EQ(c.uplinks[1].mtu, 1400);
  EXPECT_EQ(c.peers[0].endpoints[1].port, 4501);
  EXPECT_EQ(c.peers[0].endpoints[1].uplinks, (std::vector<std::string>{"isp2", "isp1"}));
  EXPECT_EQ(c.lcores.control, 2u);
  EXPECT_EQ(c.lcores.workers, (std::vector<unsigned>{3, 5}));
  EXPECT_EQ(c.lcores.worker_count, 2u);
  EXPECT_EQ(c.idle, dp::IdlePolicy::kBusy);
  EXPECT_EQ(c.overlay_port, 4600);
  EXPECT_EQ(c.flow_capacity, 1024u);
  EXPECT_EQ(c.icmp_errors_per_sec, 0u);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.dpdk.file_prefix, "Edge_1");
  EXPECT_FALSE(c.dpdk.hugepages);
  EXPECT_EQ(c.dpdk.memory_mb, 512u);
  EXPECT_EQ(c.dpdk.extra_args, (std::vector<std::string>{"--log-level=lib.eal:8", "--no-telemetry"}));
  EXPECT_EQ(c.mgmt.socket, "/tmp/s.sock");
  EXPECT_EQ(c.mgmt.group, "sdwan");
  EXPECT_TRUE(c.metrics.on());
  EXPECT_EQ(c.metrics.address.str(), "0.0.0.0");
  EXPECT_EQ(c.metrics.port, 9100);
  EXPECT_EQ(c.peers[0].endpoints[0].link, std::optional<uint16_t>(4095));
  EXPECT_FALSE(c.esp.esn);
  EXPECT_EQ(c.esp.replay_window, 1048576u);
  EXPECT_EQ(c.esp.keylog, "/run/sdwan/edge.keylog");
  EXPECT_EQ(c.esp.epoch_store, "/srv/edge.epochs");
  EXPECT_EQ(c.esp.lifetime.hard, (SaLimits{1000000, 5000000000, 600}));
  EXPECT_EQ(c.esp.lifetime.soft_percent, 50u);
  EXPECT_EQ(c.esp.lifetime.drain_ms, 2000u);
  EXPECT_EQ(c.paths.probe_interval_ms, 20u);
  EXPECT_EQ(c.paths.state.interval_ns, 20'000'000u);
  EXPECT_EQ(c.paths.state.multiplier, 5u);
  EXPECT_EQ(c.paths.state.hold_up, 7u);
  EXPECT_EQ(c.paths.window_s, 30u);
  EXPECT_EQ(c.paths.state.damping.flaps, 0u);
  EXPECT_EQ(c.paths.state.damping.window_ns, 90'000'000'000u);
  EXPECT_EQ(c.paths.state.damping.hold_min_ns, 500'000'000u);
  EXPECT_EQ(c.paths.state.damping.hold_max_ns, 8'000'000'000u);
  EXPECT_EQ(c.paths.state.damping.quiet_ns, 300'000'000'000u);
}

TEST(Config, LinkNumbersComeFromBothEndpointsUnlessSet) {
  // docs/keys.md's worked example: SHA-256("sdwan-link v1" || 0a010002 1194 || 0a010102 1194)
  // starts 19c0..., so the link is 0x19c = 412, whichever side computes it.
  const Endpoint edge{*Ipv4::parse("10.1.0.2"), 4500}, hub{*Ipv4::parse("10.1.1.2"), 4500};
  EXPECT_EQ(default_link(edge, hub), 412);
  EXPECT_EQ(default_link(hub, edge), 412);
  EXPECT_EQ(default_link({*Ipv4::parse("10.2.0.2"), 4500}, {*Ipv4::parse("10.2.1.2"), 4500}), 3410);
  EXPECT_EQ(default_link({*Ipv4::parse("10.3.0.2"), 4500}, {*Ipv4::parse("10.3.1.2"), 4500}), 2250);
  EXPECT_NE(default_link(edge, {*Ipv4::parse("10.1.1.2"), 4501}), 412) << "the port counts too";

  auto r = parse_config(base(), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(path_link(*r, 0, 0, 0), 412);   // isp1:hub
  EXPECT_EQ(path_link(*r, 0, 0, 1), 2176);  // isp1:hub#2, 10.1.0.2:4500 - 10.2.1.2:4500
  EXPECT_EQ(path_link(*r, 1, 0, 1), 3410);  // isp2:hub
  auto set = parse_config(edit("        uplinks: [isp1]\n", "        uplinks: [isp1]\n        link: 0\n"), "edge.yaml");
  ASSERT_TRUE(set.ok()) << set.error().msg;
  EXPECT_EQ(path_link(*set, 0, 0, 0), 0);
  // A set link resolves a collision of computed ones.
  auto fixed = parse_config(
      edit("      - address: 10.2.1.2\n", "      - address: 10.2.34.208\n        uplinks: [isp2]\n        link: 9\n"),
      "edge.yaml");
  ASSERT_TRUE(fixed.ok()) << fixed.error().msg;
  EXPECT_EQ(path_link(*fixed, 1, 0, 1), 9);

  // Both lab appliances compute the same three links.
  auto lab_edge = load_config(SDWAN_SOURCE_ROOT "/tests/configs/edge.yaml");
  auto lab_hub = load_config(SDWAN_SOURCE_ROOT "/tests/configs/hub.yaml");
  ASSERT_TRUE(lab_edge.ok() && lab_hub.ok());
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(path_link(*lab_edge, i, 0, i), path_link(*lab_hub, i, 0, i)) << i;
}

TEST(Config, PathsOverAllPeersAreBounded) {
  // 257 peers x 8 endpoints x 2 uplinks = 4112 paths, each peer within its own limit of 16.
  std::string yaml = std::string(kHead) + kUplinks + "peers:\n";
  for (int p = 0; p < 257; ++p) {
    yaml += "  - name: p" + std::to_string(p) + "\n    endpoints:\n";
    for (int e = 1; e <= 8; ++e)
      yaml += "      - address: 10.9." + std::to_string(p % 250) + "." + std::to_string(e) + "\n";
    yaml += "    prefixes: [10." + std::to_string(100 + p / 250) + "." + std::to_string(p % 250) + ".0/24]\n";
    yaml += "    key_file: /etc/sdwan/master.key\n";
  }
  auto r = parse_config(yaml, "edge.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg, "edge.yaml:17: peers: expected at most 4096 paths over all peers, got 4112");
}

TEST(Config, WorkersAloneSetTheWorkerCount) {
  auto r = parse_config(append("lcores:\n  workers: [1, 2, 3]\n"), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->lcores.worker_count, 3u);
}

TEST(Config, BandwidthTakesTcStyleUnits) {
  struct Rate {
    const char* text;
    uint64_t bps;  // 0 = rejected
  };
  const Rate rates[] = {
      {"64000", 64000},
      {"64000bit", 64000},
      {"250kbit", 250000},
      {"250Kbit", 250000},
      {"100Mbit", 100000000},
      {"100mbit", 100000000},
      {"100MBIT", 100000000},
      {"10Gbit", 10000000000},
      {"2.5gbit", 2500000000},
      {"1.5kbit", 1500},
      {"1000Gbit", 1000000000000},
      {"1.5bit", 0},
      {"0", 0},
      {"0Mbit", 0},
      {"Mbit", 0},
      {"10 Mbit", 0},
      {"10Mbps", 0},
      {"10MiBit", 0},
      {"-5Mbit", 0},
      {"1e9", 0},
      {"1.Mbit", 0},
      {"1001Gbit", 0},
      {"99999999999999999999", 0},
  };
  for (const auto& rate : rates) {
    const std::string yaml =
        edit("    cost: metered\n", std::string("    cost: metered\n    bandwidth: \"") + rate.text + "\"\n");
    auto r = parse_config(yaml, "edge.yaml");
    if (rate.bps == 0) {
      ASSERT_FALSE(r.ok()) << rate.text;
      EXPECT_NE(r.error().msg.find("uplinks[1].bandwidth: expected a rate like 100Mbit"), std::string::npos)
          << r.error().msg;
    } else {
      ASSERT_TRUE(r.ok()) << rate.text << ": " << r.error().msg;
      EXPECT_EQ(r->uplinks[1].bandwidth_bps, rate.bps) << rate.text;
    }
  }
}

TEST(Config, DefaultRouteViaAPeerIsAllowedAlthoughItCoversTheLan) {
  // The LAN's own route is longer, so only traffic for elsewhere follows 0.0.0.0/0.
  auto r = parse_config(edit("[192.168.20.0/24]", "[0.0.0.0/0]"), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->peers[0].prefixes[0], (Prefix4{Ipv4{0}, 0}));
}

TEST(Config, PointToPointUplinkUsesBothAddresses) {
  auto r = parse_config(edit("10.2.0.2/24", "10.2.0.0/31"), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->uplinks[1].address.str(), "10.2.0.0/31");
}

TEST(Config, NullAndUnnamedTapMayRepeatButNamedDevicesMayNot) {
  // YAML reads a plain null as no value; the port spec null must survive that.
  std::string yaml = edit("af_packet:lan0", "null");
  yaml = edit(yaml, "af_packet:wan1", "null  # discards");
  yaml = edit(yaml, "af_packet:wan2", "tap");
  auto r = parse_config(yaml, "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->lan.port, "null");
  EXPECT_EQ(r->uplinks[0].port, "null");
  EXPECT_EQ(r->uplinks[1].port, "tap");
  auto quoted = parse_config(edit(edit("af_packet:wan1", "\"null\""), "af_packet:wan2", "tap"), "edge.yaml");
  ASSERT_TRUE(quoted.ok()) << quoted.error().msg;
  EXPECT_EQ(quoted->uplinks[0].port, "null");
  auto tap = parse_config(edit(edit("af_packet:wan1", "tap"), "af_packet:wan2", "tap"), "edge.yaml");
  ASSERT_TRUE(tap.ok()) << tap.error().msg;

  auto named_tap = parse_config(edit(edit("af_packet:wan1", "tap:sd0"), "af_packet:wan2", "tap:sd0"), "edge.yaml");
  ASSERT_FALSE(named_tap.ok());
  EXPECT_EQ(named_tap.error().msg,
            "edge.yaml:12: uplinks[1].port: expected a device no other port uses, got \"tap:sd0\" (uplinks[0].port "
            "already uses it)");

  auto pci =
      parse_config(edit(edit("af_packet:wan1", "pci:0000:03:00.0"), "af_packet:wan2", "pci:0000:03:00.0"), "edge.yaml");
  ASSERT_FALSE(pci.ok());
  EXPECT_EQ(
      pci.error().msg,
      "edge.yaml:12: uplinks[1].port: expected a device no other port uses, got \"pci:0000:03:00.0\" (uplinks[0].port "
      "already uses it)");
}

TEST(Config, ValuesMayBeQuoted) {
  auto r = parse_config(edit("  address: 192.168.10.1/24\n", "  address: \"192.168.10.1/24\"\n  mtu: '1400'\n"),
                        "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->lan.mtu, 1400);
}

TEST(Config, LabExamplesLoad) {
  auto edge = load_config(SDWAN_SOURCE_ROOT "/tests/configs/edge.yaml");
  ASSERT_TRUE(edge.ok()) << edge.error().msg;
  EXPECT_EQ(edge->file, SDWAN_SOURCE_ROOT "/tests/configs/edge.yaml");
  EXPECT_EQ(edge->name, "edge");
  EXPECT_EQ(edge->role, Role::kEdge);
  EXPECT_EQ(edge->lan.port, "af_packet:e-lan");
  EXPECT_EQ(edge->lan.address.str(), "192.168.10.1/24");
  ASSERT_EQ(edge->uplinks.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i + 1);
    EXPECT_EQ(edge->uplinks[i].name, "isp" + n);
    EXPECT_EQ(edge->uplinks[i].port, "af_packet:e-isp" + n);
    EXPECT_EQ(edge->uplinks[i].address.str(), "10." + n + ".0.2/24");
    EXPECT_EQ(edge->uplinks[i].next_hop.str(), "10." + n + ".0.1");
    EXPECT_EQ(edge->uplinks[i].cost, i == 2 ? CostTier::kMetered : CostTier::kNormal);
  }
  ASSERT_EQ(edge->peers.size(), 1u);
  EXPECT_EQ(edge->peers[0].name, "hub");
  ASSERT_EQ(edge->peers[0].endpoints.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i + 1);
    EXPECT_EQ(edge->peers[0].endpoints[i].address.str(), "10." + n + ".1.2");
    EXPECT_EQ(edge->peers[0].endpoints[i].uplinks, std::vector<std::string>{"isp" + n});
  }
  EXPECT_EQ(edge->peers[0].prefixes, std::vector<Prefix4>{*Prefix4::parse("192.168.20.0/24")});
  EXPECT_EQ(edge->mgmt.socket, "/run/sdwan/edge.sock");
  EXPECT_EQ(edge->dpdk.file_prefix, "edge");
  EXPECT_EQ(edge->idle, dp::IdlePolicy::kAdaptive);
  EXPECT_EQ(edge->lcores.control, 0u);
  EXPECT_EQ(edge->lcores.workers, std::vector<unsigned>{1});

  auto hub = load_config(SDWAN_SOURCE_ROOT "/tests/configs/hub.yaml");
  ASSERT_TRUE(hub.ok()) << hub.error().msg;
  EXPECT_EQ(hub->name, "hub");
  EXPECT_EQ(hub->role, Role::kHub);
  EXPECT_EQ(hub->lan.port, "af_packet:h-lan");
  EXPECT_EQ(hub->lan.address.str(), "192.168.20.1/24");
  ASSERT_EQ(hub->uplinks.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i + 1);
    EXPECT_EQ(hub->uplinks[i].name, "isp" + n);
    EXPECT_EQ(hub->uplinks[i].port, "af_packet:h-isp" + n);
    EXPECT_EQ(hub->uplinks[i].address.str(), "10." + n + ".1.2/24");
    EXPECT_EQ(hub->uplinks[i].next_hop.str(), "10." + n + ".1.1");
  }
  ASSERT_EQ(hub->peers.size(), 1u);
  EXPECT_EQ(hub->peers[0].name, "edge");
  ASSERT_EQ(hub->peers[0].endpoints.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i + 1);
    // The hub reaches each edge uplink address over the ISP that carries it.
    EXPECT_EQ(hub->peers[0].endpoints[i].address, edge->uplinks[i].address.addr);
    EXPECT_EQ(hub->peers[0].endpoints[i].uplinks, std::vector<std::string>{"isp" + n});
  }
  EXPECT_EQ(hub->peers[0].prefixes, std::vector<Prefix4>{*Prefix4::parse("192.168.10.0/24")});
  EXPECT_EQ(hub->mgmt.socket, "/run/sdwan/hub.sock");
  EXPECT_EQ(hub->dpdk.file_prefix, "hub");
  EXPECT_EQ(hub->lcores.workers, std::vector<unsigned>{1});
  // The lab's classes (issue 6): tests and anyone trying the lab rely on them.
  for (const Config* c : {&*edge, &*hub}) {
    ASSERT_EQ(c->classes.size(), 4u) << c->name;
    const auto& k = c->classes;
    EXPECT_EQ(k[0].name, "voice");
    EXPECT_EQ(k[0].mode, dp::ClassMode::kBest);
    ASSERT_EQ(k[0].match.size(), 1u);
    EXPECT_EQ(k[0].match[0].proto, 17);
    EXPECT_EQ(k[0].match[0].dport, (PortRange{5004, 5004}));
    EXPECT_EQ(k[0].sla.latency_ms, 150.0);
    EXPECT_EQ(k[0].sla.jitter_ms, 30.0);
    EXPECT_EQ(k[0].sla.loss_pct, 1.0);
    EXPECT_EQ(k[1].name, "critical");
    EXPECT_EQ(k[1].mode, dp::ClassMode::kDuplicate);
    EXPECT_EQ(k[1].match[0].dport, (PortRange{5005, 5005}));
    EXPECT_EQ(k[2].name, "video");
    EXPECT_EQ(k[2].mode, dp::ClassMode::kSpray);
    EXPECT_EQ(k[2].match[0].dport, (PortRange{5006, 5006}));
    ASSERT_EQ(k[2].match.size(), 2u) << "UDP 5006, and TCP 5006 for the lab's iperf3 spray test";
    EXPECT_EQ(k[2].match[1].proto, 6);
    EXPECT_EQ(k[2].match[1].dport, (PortRange{5006, 5006}));
    EXPECT_EQ(k[3].name, "bulk");
    EXPECT_TRUE(k[3].is_default);
    EXPECT_EQ(k[3].mode, dp::ClassMode::kBalance);
    EXPECT_FALSE(k[3].sla.latency_ms);
    EXPECT_EQ(c->uplinks[2].cost, CostTier::kMetered) << c->name;
  }
  // And the edge reaches each hub uplink address the same way.
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(edge->peers[0].endpoints[i].address, hub->uplinks[i].address.addr);
}

TEST(Config, EventsDefaultToNoLogAndNoHooks) {
  auto r = parse_config(base(), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  const EventsConfig& e = r->events;
  EXPECT_EQ(e.log, "");
  EXPECT_TRUE(e.log_fsync);
  EXPECT_EQ(e.ring, 1000u);
  EXPECT_TRUE(e.hooks.empty());
  EXPECT_EQ(e.hook_timeout_ms, 10000u);
  EXPECT_EQ(e.hook_kill_grace_ms, 2000u);
  EXPECT_EQ(e.hook_max_concurrent, 4u);
  EXPECT_EQ(e.hook_queue, 256u);
  EXPECT_EQ(e.hook_output_max, 4096u);
}

TEST(Config, EventsSectionIsRead) {
  auto r = parse_config(append("events:\n"
                               "  log: /var/log/sdwan/edge.events.jsonl\n"
                               "  log_fsync: false\n"
                               "  ring: 50\n"
                               "  hook_timeout_ms: 500\n"
                               "  hook_kill_grace_ms: 0\n"
                               "  hook_max_concurrent: 2\n"
                               "  hook_queue: 8\n"
                               "  hook_output_max: 0\n"
                               "  hooks:\n"
                               "    path_down: [/usr/local/bin/alert]\n"
                               "    \"*\":\n"
                               "      - /usr/local/bin/all\n"
                               "      - [/usr/local/bin/webhook, https://example.net/hook, 5]\n"),
                        "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  const EventsConfig& e = r->events;
  EXPECT_EQ(e.log, "/var/log/sdwan/edge.events.jsonl");
  EXPECT_FALSE(e.log_fsync);
  EXPECT_EQ(e.ring, 50u);
  EXPECT_EQ(e.hook_timeout_ms, 500u);
  EXPECT_EQ(e.hook_kill_grace_ms, 0u);
  EXPECT_EQ(e.hook_max_concurrent, 2u);
  EXPECT_EQ(e.hook_queue, 8u);
  EXPECT_EQ(e.hook_output_max, 0u);
  ASSERT_EQ(e.hooks.size(), 2u);
  EXPECT_EQ(e.hooks.at("path_down"), (std::vector<std::vector<std::string>>{{"/usr/local/bin/alert"}}));
  EXPECT_EQ(e.hooks.at("*"), (std::vector<std::vector<std::string>>{
                                 {"/usr/local/bin/all"}, {"/usr/local/bin/webhook", "https://example.net/hook", "5"}}));
}

TEST(Config, EventsMistakesNameLineAndKey) {
  const std::string types =
      "\"*\", path_up, path_down, path_damped, sla_breached, sla_recovered, class_moved, sa_rekey, reload, "
      "reload_failed, drill_start, drill_end, app_failing, app_ok";
  const Broken cases[] = {
      {"log relative", append("events:\n  log: events.jsonl\n"),
       "edge.yaml:25: events.log: expected an absolute path like /var/log/sdwan/edge.events.jsonl, got \"events.jsonl\""},
      {"unknown key", append("events:\n  logfile: /x\n"),
       "edge.yaml:25: events.logfile: unknown key (expected one of: log, log_fsync, ring, hooks, hook_timeout_ms, "
       "hook_kill_grace_ms, hook_max_concurrent, hook_queue, hook_output_max)"},
      {"ring too small", append("events:\n  ring: 5\n"),
       "edge.yaml:25: events.ring: expected a number of events from 10 to 100000, got \"5\""},
      {"timeout too short", append("events:\n  hook_timeout_ms: 10\n"),
       "edge.yaml:25: events.hook_timeout_ms: expected a number of milliseconds from 100 to 3600000, got \"10\""},
      {"no concurrency", append("events:\n  hook_max_concurrent: 0\n"),
       "edge.yaml:25: events.hook_max_concurrent: expected a number of hooks from 1 to 64, got \"0\""},
      {"unknown event type", append("events:\n  hooks:\n    path_flap: [/bin/true]\n"),
       "edge.yaml:26: events.hooks.path_flap: unknown event type (expected one of: " + types + ")"},
      {"hooks not a mapping", append("events:\n  hooks: [/bin/true]\n"),
       "edge.yaml:25: events.hooks: expected a mapping of event type to hooks, got a list"},
      {"hook list empty", append("events:\n  hooks:\n    path_down: []\n"),
       "edge.yaml:26: events.hooks.path_down: expected 1 to 16 hooks (an absolute path, or a list of one and its "
       "arguments), got none"},
      {"hook path relative", append("events:\n  hooks:\n    path_down: [alert.sh]\n"),
       "edge.yaml:26: events.hooks.path_down[0]: expected an absolute path like /usr/local/lib/sdwan/hooks/alert, got "
       "\"alert.sh\""},
      {"hook argv path relative", append("events:\n  hooks:\n    sa_rekey:\n      - [alert.sh, x]\n"),
       "edge.yaml:27: events.hooks.sa_rekey[0][0]: expected an absolute path like /usr/local/lib/sdwan/hooks/alert, "
       "got \"alert.sh\""},
      {"hook argument a mapping", append("events:\n  hooks:\n    sa_rekey:\n      - [/bin/x, {a: 1}]\n"),
       "edge.yaml:27: events.hooks.sa_rekey[0][1]: expected an argument (a string), got a mapping"},
      {"hook type twice", append("events:\n  hooks:\n    app_ok: [/bin/a]\n    app_ok: [/bin/b]\n"),
       "edge.yaml:27: events.hooks.app_ok: duplicate key (first on line 26)"},
  };
  for (const auto& c : cases) {
    auto r = parse_config(c.yaml, "edge.yaml");
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().msg, c.expected) << c.name;
  }
}

TEST(Config, HostPortAndAppChecksAreRead) {
  auto c = parse_config(append("host: {port: tap:sdwan0}\n"
                               "apps:\n"
                               "  - {name: web, type: http, target: http://192.168.20.2:8080/health, expect_status: 204}\n"
                               "  - {name: db, type: tcp, target: 192.168.20.5:5432, interval_ms: 1000}\n"
                               "  - {name: root, type: http, target: http://192.168.20.9, timeout_ms: 300}\n"),
                        "edge.yaml");
  ASSERT_TRUE(c.ok()) << c.error().msg;
  EXPECT_EQ(c->host.port, "tap:sdwan0");
  EXPECT_EQ(c->host.iface(), "sdwan0");
  ASSERT_EQ(c->apps.size(), 3u);
  EXPECT_EQ(c->apps[0].kind, AppCheckConfig::Kind::kHttp);
  EXPECT_EQ(c->apps[0].address.str(), "192.168.20.2");
  EXPECT_EQ(c->apps[0].port, 8080);
  EXPECT_EQ(c->apps[0].path, "/health");
  EXPECT_EQ(c->apps[0].expect_status, 204);
  EXPECT_EQ(c->apps[0].interval_ms, 10000u);
  EXPECT_EQ(c->apps[0].timeout_ms, 2000u);
  EXPECT_EQ(c->apps[1].kind, AppCheckConfig::Kind::kTcp);
  EXPECT_EQ(c->apps[1].port, 5432);
  EXPECT_EQ(c->apps[1].timeout_ms, 500u);  // half the interval when that is below the default
  EXPECT_EQ(c->apps[2].port, 80);
  EXPECT_EQ(c->apps[2].path, "/");
  EXPECT_EQ(c->apps[2].timeout_ms, 300u);
  auto none = parse_config(base(), "edge.yaml");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->host.on());
  EXPECT_TRUE(none->apps.empty());
}

TEST(Config, HostAndAppsMistakesNameLineAndKey) {
  const std::string host = "host: {port: tap:sdwan0}\n";
  const Broken cases[] = {
      {"host not a tap", append("host: {port: af_packet:eth9}\n"),
       "edge.yaml:24: host.port: expected tap:NAME with a kernel interface name of 1 to 15 characters (sdwand "
       "configures that interface), got \"af_packet:eth9\""},
      {"host tap unnamed", append("host: {port: tap}\n"),
       "edge.yaml:24: host.port: expected tap:NAME with a kernel interface name of 1 to 15 characters (sdwand "
       "configures that interface), got \"tap\""},
      {"host port reused", append("host: {port: \"tap:wan1\"}\n"),
       "edge.yaml:24: host.port: expected a device no other port uses, got \"tap:wan1\" (uplinks[0].port already "
       "uses it)"},
      {"apps without host", append("apps:\n  - {name: a, type: tcp, target: 192.168.20.2:80}\n"),
       "edge.yaml:25: apps: checks run from the appliance's host stack: they need host.port (e.g. host: {port: "
       "tap:sdwan0})"},
      {"app type", append(host + "apps:\n  - {name: a, type: icmp, target: 192.168.20.2:80}\n"),
       "edge.yaml:26: apps[0].type: expected tcp or http, got \"icmp\""},
      {"tcp target without port", append(host + "apps:\n  - {name: a, type: tcp, target: 192.168.20.2}\n"),
       "edge.yaml:26: apps[0].target: expected an IPv4 address and TCP port like 192.168.20.2:443, got "
       "\"192.168.20.2\""},
      {"https", append(host + "apps:\n  - {name: a, type: http, target: \"https://192.168.20.2/\"}\n"),
       "edge.yaml:26: apps[0].target: expected a URL like http://192.168.20.2:8080/health (plain http, an IPv4 "
       "address), got \"https://192.168.20.2/\""},
      {"target not behind a peer", append(host + "apps:\n  - {name: a, type: tcp, target: 10.9.9.9:80}\n"),
       "edge.yaml:26: apps[0].target: expected a service behind a peer (an address inside 192.168.20.0/24), got "
       "\"10.9.9.9:80\""},
      {"timeout not below interval",
       append(host + "apps:\n  - {name: a, type: tcp, target: 192.168.20.2:80, interval_ms: 1000, timeout_ms: 1000}\n"),
       "edge.yaml:26: apps[0].timeout_ms: expected less than interval_ms (1000), got \"1000\""},
      {"interval too short", append(host + "apps:\n  - {name: a, type: tcp, target: 192.168.20.2:80, interval_ms: 10}\n"),
       "edge.yaml:26: apps[0].interval_ms: expected an integer from 500 to 3600000, got \"10\""},
      {"expect_status on tcp",
       append(host + "apps:\n  - {name: a, type: tcp, target: 192.168.20.2:80, expect_status: 200}\n"),
       "edge.yaml:26: apps[0].expect_status: expected no expect_status on a tcp check (http only)"},
      {"name twice",
       append(host + "apps:\n  - {name: a, type: tcp, target: 192.168.20.2:80}\n  - {name: a, type: tcp, target: "
                     "192.168.20.2:81}\n"),
       "edge.yaml:27: apps[1].name: expected a unique check name, got \"a\" (apps[0] has it)"},
  };
  for (const auto& c : cases) {
    auto r = parse_config(c.yaml, "edge.yaml");
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().msg, c.expected) << c.name;
  }
}

TEST(Config, UnreadableFileSaysWhy) {
  auto missing = load_config("/nonexistent/edge.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().msg, "/nonexistent/edge.yaml: cannot read: No such file or directory");

  auto dir = load_config(SDWAN_SOURCE_ROOT "/tests/configs");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().msg, SDWAN_SOURCE_ROOT "/tests/configs: cannot read: Is a directory");
}

TEST(Config, LoadNamesTheGivenPathInErrors) {
  const std::string path = testing::TempDir() + "config_test_broken.yaml";
  { std::ofstream(path) << edit("role: edge", "role: spoke"); }
  auto r = load_config(path);
  std::remove(path.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg, path + ":2: role: expected edge or hub, got \"spoke\"");
}

std::string classes_yaml(int n, bool with_default) {
  std::string s = "classes:\n";
  for (int i = 0; i < n; ++i) s += "  - name: c" + std::to_string(i) + "\n    match: [{dport: " + std::to_string(i) + "}]\n";
  if (with_default) s += "  - name: rest\n    default: true\n";
  return s;
}

TEST(Config, ClassesAreAtMostSixtyFourWithTheDefault) {
  auto ok = parse_config(append(classes_yaml(63, true)), "edge.yaml");
  ASSERT_TRUE(ok.ok()) << ok.error().msg;
  EXPECT_EQ(ok->classes.size(), 64u);
  auto implicit = parse_config(append(classes_yaml(63, false)), "edge.yaml");
  ASSERT_TRUE(implicit.ok()) << implicit.error().msg;
  ASSERT_EQ(implicit->classes.size(), 64u);
  EXPECT_EQ(implicit->classes[63].name, "default");
  auto too_many = parse_config(append(classes_yaml(64, true)), "edge.yaml");
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().msg, "edge.yaml:25: classes: expected 1 to 64 classes, got 65");
  auto no_room = parse_config(append(classes_yaml(64, false)), "edge.yaml");
  ASSERT_FALSE(no_room.ok());
  EXPECT_EQ(no_room.error().msg,
            "edge.yaml:25: classes: expected at most 63 classes without a default class (the implicit default class "
            "takes the last id), got 64");
}

TEST(Config, WithoutClassesOneImplicitDefaultClassInModeBest) {
  auto r = parse_config(base(), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  ASSERT_EQ(r->classes.size(), 1u);
  const ClassConfig& d = r->classes[0];
  EXPECT_EQ(d.name, "default");
  EXPECT_TRUE(d.is_default);
  EXPECT_TRUE(d.match.empty());
  EXPECT_EQ(d.mode, dp::ClassMode::kBest);
  EXPECT_FALSE(d.sla.any());
  EXPECT_EQ(d.metered, MeteredUse::kAvoid);
  EXPECT_EQ(d.fallback, Fallback::kLeastBad);
  EXPECT_EQ(r->policy.switch_margin_pct, 10u);
  EXPECT_FALSE(r->policy.switch_margin_ms);
  EXPECT_EQ(r->policy.switch_hold_ms, 1000u);
  EXPECT_EQ(r->policy.failback_stable_ms, 5000u);
}

TEST(Config, ClassesAndPolicyAreRead) {
  const std::string more =
      "classes:\n"
      "  - name: voice\n"
      "    match:\n"
      "      - {proto: udp, dport: 5004, dscp: ef}\n"
      "      - src: 192.168.10.0/25\n"
      "        dst: 10.0.0.0/8\n"
      "        proto: tcp\n"
      "        sport: 1000-2000\n"
      "        dscp: af41\n"
      "      - {proto: 47, dscp: cs1}\n"
      "    sla: {latency_ms: 150, jitter_ms: 30, loss_pct: 0.5}\n"
      "    mode: best\n"
      "    metered: never\n"
      "    fallback: drop\n"
      "  - name: bulk\n"
      "    default: true\n"
      "    mode: balance\n"
      "  - name: critical\n"
      "    match: [{dport: \"5005\"}]\n"
      "    mode: duplicate\n"
      "    adaptive: yes\n"
      "    max_overhead_pct: 20\n"
      "    metered: allow\n"
      "  - name: video\n"
      "    match: [{dport: 5006}]\n"
      "    mode: spray\n"
      "    reorder_max_ms: 30\n"
      "policy:\n"
      "  switch_margin_ms: 15\n"
      "  switch_hold_ms: 0\n"
      "  failback_stable_ms: 20000\n";
  auto r = parse_config(append(more), "edge.yaml");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  ASSERT_EQ(r->classes.size(), 4u);
  const ClassConfig& v = r->classes[0];
  EXPECT_EQ(v.name, "voice");
  EXPECT_FALSE(v.is_default);
  ASSERT_EQ(v.match.size(), 3u);
  EXPECT_EQ(v.match[0].proto, 17);
  EXPECT_EQ(v.match[0].dport, (PortRange{5004, 5004}));
  EXPECT_FALSE(v.match[0].sport);
  EXPECT_EQ(v.match[0].dscp, 46);
  EXPECT_FALSE(v.match[0].src);
  EXPECT_EQ(v.match[1].src, Prefix4::parse("192.168.10.0/25"));
  EXPECT_EQ(v.match[1].dst, Prefix4::parse("10.0.0.0/8"));
  EXPECT_EQ(v.match[1].proto, 6);
  EXPECT_EQ(v.match[1].sport, (PortRange{1000, 2000}));
  EXPECT_EQ(v.match[1].dscp, 34);
  EXPECT_EQ(v.match[2].proto, 47);
  EXPECT_EQ(v.match[2].dscp, 8);
  EXPECT_EQ(v.sla.latency_ms, 150.0);
  EXPECT_EQ(v.sla.jitter_ms, 30.0);
  EXPECT_EQ(v.sla.loss_pct, 0.5);
  EXPECT_EQ(v.metered, MeteredUse::kNever);
  EXPECT_EQ(v.fallback, Fallback::kDrop);
  EXPECT_TRUE(r->classes[1].is_default);
  EXPECT_EQ(r->classes[1].mode, dp::ClassMode::kBalance);
  EXPECT_FALSE(r->classes[1].sla.any());
  EXPECT_EQ(r->classes[2].mode, dp::ClassMode::kDuplicate);
  EXPECT_TRUE(r->classes[2].adaptive);
  EXPECT_EQ(r->classes[2].max_overhead_pct, 20u);
  EXPECT_EQ(r->classes[2].metered, MeteredUse::kAllow);
  EXPECT_EQ(r->classes[2].match[0].dport, (PortRange{5005, 5005}));
  EXPECT_EQ(r->classes[3].mode, dp::ClassMode::kSpray);
  EXPECT_EQ(r->classes[3].reorder_max_ms, 30u);
  EXPECT_EQ(r->classes[2].reorder_max_ms, 50u);
  EXPECT_EQ(r->policy.switch_margin_ms, 15u);
  EXPECT_EQ(r->policy.switch_hold_ms, 0u);
  EXPECT_EQ(r->policy.failback_stable_ms, 20000u);
}

TEST(Config, DscpNames) {
  const std::vector<std::pair<std::string, int>> names = {
      {"be", 0}, {"default", 0}, {"cs0", 0}, {"cs1", 8}, {"cs7", 56}, {"af11", 10}, {"af12", 12}, {"af13", 14},
      {"af21", 18}, {"af31", 26}, {"af42", 36}, {"af43", 38}, {"ef", 46}, {"EF", 46}, {"va", 44}, {"le", 1}, {"63", 63}};
  for (const auto& [n, v] : names) {
    auto r = parse_config(append("classes:\n  - name: x\n    match: [{dscp: " + n + "}]\n"), "edge.yaml");
    ASSERT_TRUE(r.ok()) << n << ": " << r.error().msg;
    EXPECT_EQ(r->classes[0].match[0].dscp, v) << n;
  }
}

TEST(Config, NamesOfEnums) {
  EXPECT_EQ(role_name(Role::kEdge), "edge");
  EXPECT_EQ(role_name(Role::kHub), "hub");
  EXPECT_EQ(cost_name(CostTier::kNormal), "normal");
  EXPECT_EQ(cost_name(CostTier::kMetered), "metered");
  EXPECT_EQ(mode_name(dp::ClassMode::kSpray), "spray");
  EXPECT_EQ(metered_name(MeteredUse::kNever), "never");
  EXPECT_EQ(fallback_name(Fallback::kLeastBad), "least_bad");
}

}  // namespace
}  // namespace sdwan::cp
