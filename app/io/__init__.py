"""Readers and writers for DICOM and volume files (Qt-free)."""
