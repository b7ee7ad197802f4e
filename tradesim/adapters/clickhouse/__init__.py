"""ClickHouse adapter: the analytics read model (`trades`), one SQL dialect for 18.16 and modern engines."""
