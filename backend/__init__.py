"""Metamorph backend: inference server, offline CLI, renderer, avatars and the
stylization engine. Imports torch, never bpy."""
