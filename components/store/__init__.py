"""Where bookings live: SQLite by default, PostgreSQL for replicas, with the same guarantees on both.

`ReservationStore` is the scenario's `BookingBook`: it books, changes and cancels (capacity decided in one
transaction), and holds the callback requests and the audit log; `database` says where the data is and how each
backend locks; `schema` holds the tables and their versioned migrations; `usage` counts calls on the owner's key.

May import: restaurant, settings
Never imports: fastrtc, gradio, openai
"""
