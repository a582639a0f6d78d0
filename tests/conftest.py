pytest_plugins = ["zdu.testing"]
