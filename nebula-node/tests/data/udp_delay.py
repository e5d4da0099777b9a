#!/usr/bin/env python3
"""A UDP relay that delays every datagram, both ways (the namespace tests' stand-in for netem,
which this kernel lacks). usage: udp_delay.py LISTEN_IP LISTEN_PORT TARGET_IP TARGET_PORT DELAY_S

Datagrams from any client go to the target from one upstream socket; the target's answers go
back to the last client heard from (the tests have one)."""
import asyncio
import sys


class Relay:
    def __init__(self, target, delay):
        self.target = target
        self.delay = delay
        self.client = None
        self.front = None
        self.back = None


class Front(asyncio.DatagramProtocol):
    def __init__(self, relay):
        self.r = relay

    def connection_made(self, transport):
        self.r.front = transport

    def datagram_received(self, data, addr):
        self.r.client = addr
        loop = asyncio.get_running_loop()
        loop.call_later(self.r.delay, self.r.back.sendto, data, self.r.target)


class Back(asyncio.DatagramProtocol):
    def __init__(self, relay):
        self.r = relay

    def connection_made(self, transport):
        self.r.back = transport

    def datagram_received(self, data, addr):
        if self.r.client is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(self.r.delay, self.r.front.sendto, data, self.r.client)


async def main():
    lip, lport, tip, tport, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    relay = Relay((tip, tport), delay)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Back(relay), local_addr=(lip, 0))
    await loop.create_datagram_endpoint(lambda: Front(relay), local_addr=(lip, lport))
    await asyncio.Event().wait()


asyncio.run(main())
