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
        "chatroom.transports.line",
        "twisted.plugins",
    ],
    package_data={"twisted": ["plugins/chatroom_plugin.py"]},
    install_requires=[
        "twisted>=24.7",
        # 1.6 connects its factory through a ClientService (startConnecting).
        "txredisapi>=1.6,<1.7",
        "hiredis>=3.5,<4",
        "pyopenssl>=24",
        "service-identity>=24",
        "cryptography>=47",
    ],
    entry_points={"console_scripts": ["chatroom-client = chatroom.client.app:main"]},
    extras_require={"test": ["pytest", "hypothesis", "ruff", "mypy"]},
)
