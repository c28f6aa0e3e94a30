//! Message transports (in-memory, TCP, Unix sockets), the correlating neorpc client and the serving loop. Filled by issue 4; no wasmtime here.
