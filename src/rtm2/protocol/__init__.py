"""The rtm2 wire protocol: frames (``frames``), codec (``codec``), code tables (``codes``) and
name rules (``names``). Nothing in this package does I/O or touches asyncio."""
