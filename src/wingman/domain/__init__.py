"""Product areas, one folder each: controllers, services, schemas and jobs of that area."""
