"""Demo catalog for `make run` and local development."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from minishop.models import Category, Product

DEMO_CATALOG: dict[str, list[tuple[str, int, int, str]]] = {
    # category: [(title, price_fen, stock, description)]
    "Tea": [
        ("West Lake Longjing 250 g", 16800, 120, "Spring green tea from Hangzhou."),
        ("Yunnan Pu'er cake 357 g", 22800, 60, "Aged ripe pu'er, pressed cake."),
        ("Fujian white tea 100 g", 9800, 200, "Silver needle buds, light and sweet."),
    ],
    "Snacks": [
        ("Spicy beef jerky 200 g", 3900, 500, "Sichuan style, chilli and pepper."),
        ("Roasted sunflower seeds 500 g", 1990, 800, "Lightly salted."),
        ("Mooncake gift box", 12800, 80, "Six lotus-paste mooncakes."),
    ],
    "Tableware": [
        ("Celadon tea cup set", 25800, 40, "Four cups and a pitcher."),
        ("Bamboo chopsticks, 10 pairs", 2990, 300, "Natural bamboo, food safe."),
    ],
}


def seed_demo_catalog(session: Session) -> int:
    """Create what is missing, matching categories by name and products by title."""
    created = 0
    for sort, (category_name, products) in enumerate(DEMO_CATALOG.items()):
        category = session.scalar(select(Category).where(Category.name == category_name))
        if category is None:
            category = Category(name=category_name, sort=sort)
            session.add(category)
            session.flush()
            created += 1
        existing = set(
            session.scalars(select(Product.title).where(Product.category_id == category.id))
        )
        for title, price_fen, stock, description in products:
            if title not in existing:
                session.add(
                    Product(
                        category_id=category.id,
                        title=title,
                        price_fen=price_fen,
                        stock=stock,
                        description=description,
                    )
                )
                created += 1
    session.commit()
    return created
