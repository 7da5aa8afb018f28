"""The enforcer's parsers and nft generator against outputs captured from the lab's real routers
(testdata/: BIRD 2.0.12 `show route table ... all`, GoBGP 3.10 `global rib -a ... -j`, both holding
the same 16 FlowSpec routes and one RTBH route that deflect announced). Run with
`python3 -m unittest` here, or `enforcer.py --selftest`; `cargo test --test enforce` runs it too."""

import os
import re
import shutil
import subprocess
import unittest

import enforcer as e

HERE = os.path.dirname(os.path.abspath(__file__))


def data(name):
    with open(os.path.join(HERE, "testdata", name)) as f:
        return f.read()


def fake_run(args):
    """The captured output for the CLI call the enforcer makes."""
    if args[0] == "birdc":
        return data(f"bird-{args[-2]}.txt")
    return data(f"gobgp-{args[-2]}.json")


def bodies(text):
    """The rules without their comments (which name the route in each router's own words)."""
    return [re.sub(r' comment ".*"$', "", line) for line in text.splitlines()]


class CapturedViews(unittest.TestCase):
    def test_bird_view_becomes_the_expected_ruleset(self):
        routes, skipped, holes = e.bird_view(fake_run, "sock")
        self.assertEqual(skipped, [])
        self.assertEqual(len(routes), 16)
        self.assertEqual(holes, {"192.0.2.9/32"})
        self.assertEqual(e.ruleset(routes)[0], data("bird.nft"))

    def test_gobgp_view_becomes_the_expected_ruleset(self):
        routes, skipped, holes = e.gobgp_view(fake_run, "127.0.0.1", "50051")
        self.assertEqual(skipped, [])
        self.assertEqual(len(routes), 16)
        self.assertEqual(holes, {"192.0.2.9/32"})
        self.assertEqual(e.ruleset(routes)[0], data("gobgp.nft"))

    def test_both_routers_views_of_the_same_routes_give_the_same_rules(self):
        bird = e.ruleset(e.bird_view(fake_run, "sock")[0])[0]
        gobgp = e.ruleset(e.gobgp_view(fake_run, "127.0.0.1", "50051")[0])[0]
        self.assertEqual(bodies(bird), bodies(gobgp))

    def test_unknown_actions_are_accepted_and_said(self):
        _, notes = e.ruleset(e.bird_view(fake_run, "sock")[0])
        said = {n: w for n, w in notes}
        self.assertEqual(said["flow4 { dst 192.0.2.6/32; proto 17; }"], "actions 0x8008 not enforced (accepted)")
        self.assertEqual(said["flow4 { dst 192.0.2.7/32; proto 47; }"], "actions 0x8009 not enforced (accepted)")

    @unittest.skipUnless(shutil.which("nft") and os.geteuid() == 0, "needs nft and root")
    def test_nft_accepts_the_generated_rulesets(self):
        for name in ("bird.nft", "gobgp.nft"):
            out = subprocess.run(["nft", "-c", "-f", "-"], input=data(name), capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, f"{name}: {out.stderr}")


class Numeric(unittest.TestCase):
    def test_bird_lists_ranges_and_operators_become_interval_sets(self):
        iv = e.intervals_of(e.bird_numeric("53,123,1000..2000,>= 60000"), 65535)
        self.assertEqual(e.nft_set(iv), "{ 53, 123, 1000-2000, 60000-65535 }")
        self.assertEqual(e.nft_set(e.intervals_of(e.bird_numeric("!= 80 && < 1024"), 65535)), "{ 0-79, 81-1023 }")
        self.assertEqual(e.nft_set(e.intervals_of(e.bird_numeric("> 24 && < 30 || 40..50"), 65535)), "{ 25-29, 40-50 }")

    def test_and_binds_tighter_than_or(self):
        # ==5 || >=10 && <=20: 5 and 10..20 (not (5 or >=10) and <=20, which would add 0..4).
        terms = [(False, e.EQ, 5), (False, e.GT | e.EQ, 10), (True, e.LT | e.EQ, 20)]
        self.assertEqual(e.intervals_of(terms, 65535), [(5, 5), (10, 20)])

    def test_a_component_that_matches_nothing_skips_the_route(self):
        r = e.Route("x", 4, {e.DPORT: [(False, e.GT, 100), (True, e.LT, 50)]}, [])
        with self.assertRaises(e.Skip):
            e.matches(r)


class Bitmask(unittest.TestCase):
    def test_bird_tcp_flags_syn_without_ack(self):
        r = e.Route("x", 4, {e.TCP_FLAGS: e.bird_bitmask("0x2/0x2 && 0x0/0x10", e.TCP_FLAGS)}, [])
        self.assertEqual(e.matches(r), [["meta nfproto ipv4", "tcp flags & 0x2 == 0x2", "tcp flags & 0x10 == 0x0"]])

    def test_an_or_of_fragment_bits_becomes_one_rule_per_alternative(self):
        r = e.Route("x", 4, {e.FRAGMENT: e.bird_bitmask("first_fragment || last_fragment", e.FRAGMENT)}, [])
        self.assertEqual(len(e.matches(r)), 2)

    def test_an_ipv6_prefix_offset_is_skipped(self):
        with self.assertRaises(e.Skip):
            e.parse_bird_flow("flow6 { dst ::1:0:0:0:0/64 offset 16; }  [x]", [])


class Actions(unittest.TestCase):
    def test_rates(self):
        bird = lambda hi, lo: e.bird_ext_communities([f"BGP.ext_community: (generic, {hi}, {lo})"])  # noqa: E731
        self.assertEqual(e.verdict(e.Route("x", 4, {}, bird("0x80060000", "0x0")))[0], "drop")
        self.assertEqual(e.verdict(e.Route("x", 4, {}, bird("0x80060000", "0x49989680")))[0],
                         "limit rate over 1250000 bytes/second drop")
        self.assertEqual(e.verdict(e.Route("x", 4, {}, bird("0x800c0000", "0x447a0000")))[0],
                         "limit rate over 1000/second drop")


if __name__ == "__main__":
    unittest.main()
