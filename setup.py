from pathlib import Path

from setuptools import setup

setup(
    name="chatroom",
    version="0.1.0",
    description="A one-room chat daemon over TLS, on Twisted.",
    long_description=Path("README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    python_requires=">=3.11",
    packages=[
        "chatroom",
        "chatroom.client",
        "chatroom.core",
        "chatroom.e2e",
        "chatroom.features",
        "chatroom.stores",
        "chatroom.stores.redis",
        "chatroom.transports",
        "chatroom.transports.irc",
        "chatroom.transports.line",
        "twisted.plugins",
    ],
    package_data={"twisted": ["plugins/chatroom_plugin.py"]},
    # The upper bounds: the TLS fast path in chatroom/transports/line/writer.py uses
    # private names of both (checked at start-up); verified on Twisted 26.10, pyOpenSSL 26.4.
    install_requires=[
        "twisted>=24.7,<27",
        "pyopenssl>=24,<27",
        "service-identity>=24",
        "cryptography>=47",
        "prometheus_client>=0.20",
        "vodozemac>=0.10,<0.11",
        # 1.6 connects its factory through a ClientService (startConnecting).
        "txredisapi>=1.6,<1.7",
        "hiredis>=3.5,<4",
        # The Redis stream's JSON, on every chat line's path (a tenth of json's time).
        "orjson>=3.9,<4",
    ],
    entry_points={"console_scripts": ["chatroom-client = chatroom.client.app:main"]},
    extras_require={"test": ["pytest", "hypothesis", "ruff", "mypy"]},
)
