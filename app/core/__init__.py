"""Qt-free core: volumes, geometry, image math and viewer state."""
