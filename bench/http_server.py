#!/usr/bin/env python3
"""The local HTTP server of `make bench`'s outbound row: GET /ok answers "ok"
(HTTP/1.1, content-length, connection: close). Prints its port, then serves
until killed."""
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")
        self.close_connection = True


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Ok)
server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
print(server.server_address[1], flush=True)
server.serve_forever()
